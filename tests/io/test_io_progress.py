"""The progress bar: quiet for the first second, only on a terminal, drawn at most every 0.1 s."""

from __future__ import annotations

import io

from resnet_core.io.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_silent_during_the_delay_then_drawn_and_closed_with_a_newline():
    clock, stream = Clock(), Terminal()
    bar = Progress(1000, "a -> b", stream=stream, clock=clock)
    bar.update(300)
    clock.now += 0.9
    bar.update(100)
    assert stream.getvalue() == ""  # a conversion under a second never shows a bar
    clock.now += 0.2
    bar.update(100)
    assert stream.getvalue() == "\ra -> b [###############...............]  50% 0/0 MB 1.1s"
    clock.now += 0.05
    bar.update(100)  # throttled: less than 0.1 s since the last draw
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.05
    bar.update(400)  # the end is always drawn
    bar.close()
    assert stream.getvalue().endswith("[##############################] 100% 0/0 MB 1.2s\n")


def test_never_drawn_off_a_terminal_or_when_disabled():
    for stream, enabled in ((io.StringIO(), None), (Terminal(), False)):
        clock = Clock()
        bar = Progress(10, "x", stream=stream, enabled=enabled, clock=clock)
        clock.now += 5
        bar.update(10)
        bar.close()
        assert stream.getvalue() == ""
