"""Free local ports for servers started beside others (tests, benchmarks, suites on one machine)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_LOW = 32768  # Linux's default when the range cannot be read
PORTS_BELOW_EPHEMERAL = 12000
ATTEMPTS = 500


def ephemeral_low(range_file: Path = EPHEMERAL_RANGE) -> int:
    """The first port of the kernel's ephemeral range (source ports of outgoing connections, and bind to 0)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_LOW


def free_ports(count: int, host: str = "127.0.0.1", range_file: Path = EPHEMERAL_RANGE) -> list[int]:
    """`count` distinct ports nobody listens on now, chosen below the ephemeral range.

    A port the kernel picks for `bind(("", 0))` comes from the ephemeral range, and between this call and the
    server's own bind any outgoing connection (a health probe, a client) may take it as its source port; a
    server then fails with "address already in use". Ports below the range are never handed out that way.
    """
    high = ephemeral_low(range_file)
    low = max(1024, high - PORTS_BELOW_EPHEMERAL)
    chosen: list[int] = []
    for port in random.sample(range(low, high), min(ATTEMPTS, high - low)):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError(f"found {len(chosen)} of {count} free ports in {low}-{high - 1} on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
