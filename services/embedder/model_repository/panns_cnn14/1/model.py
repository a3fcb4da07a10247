"""Triton Python-backend entry point for panns_cnn14: makes the project importable, then delegates.

The backend stub ignores PYTHONPATH, so the launcher passes the directories to add (the repository root and
the launcher's site-packages) in EMBEDDER_SITE_DIRS.
"""

import os
import site

for _path in os.environ.get("EMBEDDER_SITE_DIRS", "").split(os.pathsep):
    if _path:
        site.addsitedir(_path)

from services.embedder.triton_model import TritonPythonModel  # noqa: E402

__all__ = ["TritonPythonModel"]
