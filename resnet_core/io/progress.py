"""A progress bar on stderr for conversions that last: silent for the first second, off the terminal, or asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

DELAY = 1.0  # seconds of silence before a bar appears: quick conversions never show one


class Progress:
    """Counts bytes; draws only when ``enabled`` (default: the stream is a terminal) and after ``delay`` seconds."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool | None = None,
                 delay: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.label, self.done = max(int(total), 1), label, 0
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else enabled
        self.delay, self.clock = DELAY if delay is None else delay, clock
        self.start = self._last = clock()
        self.shown = False

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start >= self.delay and (now - self._last >= 0.1 or self.done >= self.total):
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = int(30 * fraction)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {100 * fraction:3.0f}% "
                          f"{self.done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB {now - self.start:.1f}s")
        self.stream.flush()
        self.shown, self._last = True, now

    def close(self) -> None:
        if self.shown:
            self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
