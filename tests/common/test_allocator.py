import json
import subprocess
import sys
from pathlib import Path

import pytest

from audiosearch.common.allocator import (
    ARROW_POOL_VARIABLE,
    CHOICES,
    HEAP_STATS,
    JEMALLOC_LIBRARY,
    MALLOC_VARIABLE,
    AllocatorError,
    find_jemalloc,
    heap_stats,
    with_allocator,
)
from devtools.support.processes import run_python

ARROW_ON_MALLOC = {ARROW_POOL_VARIABLE: "system"}


@pytest.fixture
def library_dir(tmp_path: Path) -> tuple[str, ...]:
    (tmp_path / JEMALLOC_LIBRARY).write_bytes(b"")
    return (str(tmp_path / "missing"), str(tmp_path))


def test_auto_preloads_jemalloc_where_installed(library_dir: tuple[str, ...]) -> None:
    env = with_allocator({"PATH": "/bin"}, library_dir)
    assert env == {"PATH": "/bin", "LD_PRELOAD": str(Path(library_dir[1]) / JEMALLOC_LIBRARY), **ARROW_ON_MALLOC}


def test_auto_leaves_the_environment_alone_without_jemalloc(tmp_path: Path) -> None:
    assert with_allocator({"PATH": "/bin"}, (str(tmp_path),)) == {"PATH": "/bin", **ARROW_ON_MALLOC}


def test_system_never_preloads(library_dir: tuple[str, ...]) -> None:
    env = {"AUDIOSEARCH_MALLOC": "system", "LD_PRELOAD": "/opt/other.so"}
    assert with_allocator(env, library_dir) == {**env, **ARROW_ON_MALLOC}


def test_system_takes_an_inherited_jemalloc_out_of_the_preload(library_dir: tuple[str, ...]) -> None:
    only = {"AUDIOSEARCH_MALLOC": "system", "LD_PRELOAD": f"/usr/local/lib/{JEMALLOC_LIBRARY}"}
    assert with_allocator(only, library_dir) == {"AUDIOSEARCH_MALLOC": "system", **ARROW_ON_MALLOC}
    mixed = {"AUDIOSEARCH_MALLOC": "system", "LD_PRELOAD": f"/opt/a.so:/usr/local/lib/{JEMALLOC_LIBRARY}"}
    assert with_allocator(mixed, library_dir)["LD_PRELOAD"] == "/opt/a.so"


def test_jemalloc_required_but_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(AllocatorError, match="apt-get install libjemalloc2"):
        with_allocator({"AUDIOSEARCH_MALLOC": "jemalloc"}, (str(tmp_path),))


def test_unknown_choice_is_refused(library_dir: tuple[str, ...]) -> None:
    with pytest.raises(AllocatorError, match="expected one of auto, jemalloc, system"):
        with_allocator({"AUDIOSEARCH_MALLOC": "tcmalloc"}, library_dir)


def test_other_preloads_are_kept_after_jemalloc(library_dir: tuple[str, ...]) -> None:
    env = with_allocator({"LD_PRELOAD": "/opt/a.so:/opt/b.so"}, library_dir)
    assert env["LD_PRELOAD"].split() == [str(Path(library_dir[1]) / JEMALLOC_LIBRARY), "/opt/a.so", "/opt/b.so"]


def test_jemalloc_already_preloaded_is_not_added_twice(library_dir: tuple[str, ...]) -> None:
    env = {"LD_PRELOAD": f"/elsewhere/{JEMALLOC_LIBRARY}"}
    assert with_allocator(env, library_dir) == {**env, **ARROW_ON_MALLOC}


def test_pyarrow_is_put_on_the_process_allocator_unless_the_environment_chose_its_pool(
        library_dir: tuple[str, ...]) -> None:
    for choice in CHOICES:
        assert with_allocator({MALLOC_VARIABLE: choice}, library_dir)[ARROW_POOL_VARIABLE] == "system"
    assert with_allocator({ARROW_POOL_VARIABLE: "mimalloc"}, library_dir)[ARROW_POOL_VARIABLE] == "mimalloc"


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed on this machine")
def test_a_process_started_with_the_environment_runs_on_jemalloc() -> None:
    env = with_allocator({"PATH": "/usr/bin:/bin"})
    maps = subprocess.run([sys.executable, "-c", "print(open('/proc/self/maps').read())"], env=env,
                          capture_output=True, text=True, check=True).stdout
    assert JEMALLOC_LIBRARY in maps


HEAP_PROBE = """
import json
from audiosearch.common.allocator import heap_stats
before = heap_stats()
block = bytearray(128 * 2**20)
during = heap_stats()
del block
print(json.dumps([before, during, heap_stats()]))
"""


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed on this machine")
def test_heap_stats_follow_what_a_jemalloc_process_holds() -> None:
    before, during, after = json.loads(run_python(HEAP_PROBE, with_allocator({"PATH": "/usr/bin:/bin"})))
    assert set(before) == set(HEAP_STATS)
    assert during["allocated"] - before["allocated"] >= 128 * 2**20
    assert during["resident"] >= during["active"] >= during["allocated"]
    assert during["allocated"] - after["allocated"] >= 128 * 2**20


def test_heap_stats_are_none_on_another_allocator() -> None:
    env = with_allocator({"PATH": "/usr/bin:/bin", MALLOC_VARIABLE: "system"})
    assert json.loads(run_python(HEAP_PROBE, env)) == [None, None, None]
    assert heap_stats() is None  # pytest itself runs on glibc
