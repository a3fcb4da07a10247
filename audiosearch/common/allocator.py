"""The memory allocator the services' processes run with: jemalloc where the machine has it, else glibc's.

glibc's malloc gives each thread that allocates its own arena and hands freed pages back to the system only from
the top of each; a server answering many calls at once (gRPC threads, Milvus Lite's, tritonserver's, PyTorch's)
ends up holding freed memory it cannot return. jemalloc returns it, so the services hold less under the same load
(docs/operations.md, memory; docs/benchmarks.md, bench.load).

`AUDIOSEARCH_MALLOC` chooses: `auto` (jemalloc when installed), `jemalloc` (required), `system` (glibc: jemalloc is
taken out of an inherited LD_PRELOAD too).
The choice takes effect through LD_PRELOAD, so it applies to processes started with the returned environment.
pyarrow (under Milvus Lite, in the search service) allocates from a mimalloc of its own unless
ARROW_DEFAULT_MEMORY_POOL says otherwise; the environment sets it to `system`, so its buffers go through the process's
allocator too and the search service holds less (docs/benchmarks.md, bench.load), unless it is already set.
One process is exempt: the embedder's model stub runs PyTorch, whose CPU forward passes run slower on jemalloc than
on glibc (docs/benchmarks.md, bench.throughput), so audiosearch/embedder/tritonserver.py starts it without.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

MALLOC_VARIABLE = "AUDIOSEARCH_MALLOC"
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
CHOICES = ("auto", "jemalloc", "system")
JEMALLOC_LIBRARY = "libjemalloc.so.2"
LIBRARY_DIRS = (
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
)


class AllocatorError(RuntimeError):
    """The allocator asked for is not available, or the choice is not one of CHOICES."""


def find_jemalloc(library_dirs: tuple[str, ...] = LIBRARY_DIRS) -> Path | None:
    for directory in library_dirs:
        candidate = Path(directory) / JEMALLOC_LIBRARY
        if candidate.is_file():
            return candidate
    return None


def with_allocator(env: Mapping[str, str], library_dirs: tuple[str, ...] = LIBRARY_DIRS) -> dict[str, str]:
    """`env` with jemalloc preloaded, or taken out of LD_PRELOAD, as AUDIOSEARCH_MALLOC in it asks (other preloads
    are kept), and pyarrow's pool on that allocator."""
    choice = env.get(MALLOC_VARIABLE, "auto") or "auto"
    if choice not in CHOICES:
        raise AllocatorError(f"{MALLOC_VARIABLE}={choice!r}: expected one of {', '.join(CHOICES)}")
    result = dict(env)
    result.setdefault(ARROW_POOL_VARIABLE, "system")
    if choice == "system":
        remaining = without_jemalloc(env.get("LD_PRELOAD", ""))
        result.pop("LD_PRELOAD", None)
        if remaining:
            result["LD_PRELOAD"] = remaining
        return result
    library = find_jemalloc(library_dirs)
    if library is None:
        if choice == "jemalloc":
            raise AllocatorError(f"{MALLOC_VARIABLE}=jemalloc but {JEMALLOC_LIBRARY} is in none of "
                                 f"{', '.join(library_dirs)} (Debian: apt-get install libjemalloc2)")
        return result
    preload = env.get("LD_PRELOAD", "")
    if not preloads_jemalloc(preload):
        result["LD_PRELOAD"] = " ".join([str(library), *_entries(preload)])
    return result


def preloads_jemalloc(preload: str) -> bool:
    return any(_is_jemalloc(entry) for entry in _entries(preload))


def without_jemalloc(preload: str) -> str:
    """An LD_PRELOAD value with jemalloc taken out, for a child that should run on glibc's malloc."""
    return " ".join(entry for entry in _entries(preload) if not _is_jemalloc(entry))


def _entries(preload: str) -> list[str]:
    return preload.replace(":", " ").split()


def _is_jemalloc(entry: str) -> bool:
    return os.path.basename(entry) == JEMALLOC_LIBRARY


HEAP_STATS = ("allocated", "active", "resident", "retained")


def heap_stats() -> dict[str, int] | None:
    """jemalloc's own account of this process's heap, in bytes, or None where the process runs on another allocator.

    `allocated` is what the program holds; `active` the pages those allocations occupy; `resident` what jemalloc
    has resident (its metadata and freed pages not yet returned included); `retained` address space it keeps
    unmapped for reuse. A heap that stays flat while the RSS rises is the allocator keeping memory, not a leak."""
    mallctl = _mallctl()
    if mallctl is None:
        return None
    epoch = ctypes.c_uint64(1)
    epoch_size = ctypes.c_size_t(ctypes.sizeof(epoch))
    if mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(epoch_size), ctypes.byref(epoch), epoch_size) != 0:
        return None  # statistics not compiled in
    stats: dict[str, int] = {}
    for name in HEAP_STATS:
        value = ctypes.c_size_t(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
            return None
        stats[name] = value.value
    return stats


@functools.cache
def _mallctl() -> Callable[..., int] | None:
    mallctl = getattr(ctypes.CDLL(None), "mallctl", None)  # exported only when jemalloc is loaded
    if mallctl is not None:
        mallctl.restype = ctypes.c_int
    return mallctl
