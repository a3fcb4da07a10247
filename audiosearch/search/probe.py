"""A background thread that checks a dependency and reports each change of its state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class DependencyProbe:
    """Calls `check` now and every `interval_s`, and `on_change(ok)` on the first result and on every flip."""

    def __init__(
        self, name: str, check: Callable[[], bool], on_change: Callable[[bool], None], interval_s: float
    ) -> None:
        self._name = name
        self._check = check
        self._on_change = on_change
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)
        self._last: bool | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _run(self) -> None:
        while True:
            self._tick()
            if self._stopped.wait(self._interval_s):
                return

    def _tick(self) -> None:
        try:
            ok = self._check()
        except Exception:  # a probe that raises reports the dependency as down
            log.exception("probe failed", extra={"dependency": self._name})
            ok = False
        if ok != self._last:
            self._last = ok
            level = logging.INFO if ok else logging.WARNING
            log.log(level, "dependency up" if ok else "dependency down", extra={"dependency": self._name})
            self._on_change(ok)
