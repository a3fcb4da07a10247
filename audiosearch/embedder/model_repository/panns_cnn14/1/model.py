"""Triton Python-backend entry point for panns_cnn14: makes the project importable, then delegates.

The backend stub ignores PYTHONPATH, so the launcher passes its own import path (the repository root, its
PYTHONPATH and its site-packages) in EMBEDDER_SITE_DIRS. They go first, ahead of whatever the stub's embedded
interpreter found by itself, so the model runs with the packages the launcher verified (numpy<2 among them).
"""

import os
import site
import sys

_stub_path = list(sys.path)
for _path in os.environ.get("EMBEDDER_SITE_DIRS", "").split(os.pathsep):
    if _path:
        site.addsitedir(_path)  # also runs the .pth files there (the editable install's generated-code path)
sys.path[:] = [entry for entry in sys.path if entry not in _stub_path] + _stub_path

from audiosearch.embedder.triton_model import TritonPythonModel  # noqa: E402

__all__ = ["TritonPythonModel"]
