"""Process trees read from /proc, for tests and benches that look at what a service started; Python snippets run in
a process of their own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path


def stat_fields(pid: int) -> list[str]:
    """`/proc/PID/stat` after the command name (which may hold spaces and parentheses): the state first, then the
    parent's pid, ... (stat's fields 3 on). Raises OSError for a process that is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_state(pid: int) -> str:
    """The one-letter state of a process (R running, S sleeping, T stopped, Z zombie), or "gone"."""
    try:
        return stat_fields(pid)[0]
    except FileNotFoundError:
        return "gone"


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int(stat_fields(int(entry.name))[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def run_python(code: str, env: dict[str, str], *args: str) -> str:
    """Runs `code` in a new interpreter with `env` (and this one's import path), returning its standard output."""
    env = {**env, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout
