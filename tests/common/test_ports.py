"""Free ports come from below the kernel's ephemeral range, distinct, and never one that is taken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from audiosearch.common import ports
from audiosearch.common.ports import ephemeral_low, free_port, free_ports


def test_ports_lie_below_the_ephemeral_range_and_differ() -> None:
    chosen = free_ports(10)

    assert len(set(chosen)) == 10
    assert all(ephemeral_low() - ports.PORTS_BELOW_EPHEMERAL <= port < ephemeral_low() for port in chosen)


def test_the_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    narrowed = tmp_path / "range"
    narrowed.write_text("40000\t60999\n")

    assert ephemeral_low(narrowed) == 40000
    assert ephemeral_low(tmp_path / "missing") == ports.DEFAULT_EPHEMERAL_LOW
    assert all(28000 <= port < 40000 for port in free_ports(5, range_file=narrowed))


def test_a_port_in_use_is_never_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = free_port()
    with socket.socket() as neighbour:
        if neighbour.connect_ex(("127.0.0.1", taken + 1)) == 0:
            pytest.skip(f"port {taken + 1} is in use here")
    range_file = tmp_path / "range"
    range_file.write_text(f"{taken + 2} 60999")
    monkeypatch.setattr(ports, "PORTS_BELOW_EPHEMERAL", 2)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        assert free_ports(1, range_file=range_file) == [taken + 1]
        with pytest.raises(RuntimeError, match="1 of 2 free ports"):
            free_ports(2, range_file=range_file)
