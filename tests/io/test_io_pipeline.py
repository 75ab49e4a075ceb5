"""Read-ahead keeps order, bounds the bytes prepared ahead, and passes errors through."""

from __future__ import annotations

import threading

import pytest

from resnet_core.io.pipeline import prefetch


def test_order_and_results_are_kept_for_big_and_small_items():
    sizes = [5, 500, 7, 900, 1, 1, 800, 3]
    got = list(prefetch(range(len(sizes)), lambda i: i * 10, lambda i: sizes[i], max_bytes=1000, inline_bytes=100))
    assert got == [(i, i * 10) for i in range(len(sizes))]


def test_no_more_than_the_window_is_prepared_ahead():
    lock, state = threading.Lock(), {"ahead": 0, "worst": 0}

    def prepare(i):
        with lock:
            state["ahead"] += 1
            state["worst"] = max(state["worst"], state["ahead"])
        return i

    for _ in prefetch(range(50), prepare, lambda i: 100, max_bytes=300, inline_bytes=1):
        with lock:
            state["ahead"] -= 1
    assert 1 <= state["worst"] <= 3  # 300 bytes of 100-byte items


def test_errors_reach_the_consumer():
    def prepare(i):
        if i == 3:
            raise OSError("bad sector")
        return i

    with pytest.raises(OSError, match="bad sector"):
        list(prefetch(range(10), prepare, lambda i: 10, inline_bytes=1))


def test_prefetch_into_keeps_order_and_never_overwrites_a_result_in_use():
    import time

    import numpy as np

    from resnet_core.io.pipeline import prefetch_into

    sizes = [5, 500, 7, 900, 1, 800, 600, 3, 700]

    def prepare(i, buffer):
        assert (buffer is None) == (sizes[i] < 100)
        out = np.empty(sizes[i], np.uint8) if buffer is None else buffer[:sizes[i]]
        out[:] = i
        return out

    seen = []
    for i, value in prefetch_into(range(len(sizes)), prepare, lambda i: sizes[i], inline_bytes=100):
        time.sleep(0.01)  # the next big item is being prepared meanwhile, into the other buffer
        assert value.size == sizes[i] and (value == i).all()
        seen.append(i)
    assert seen == list(range(len(sizes)))


def test_prefetch_into_errors_reach_the_consumer():
    from resnet_core.io.pipeline import prefetch_into

    def prepare(i, buffer):
        if i == 3:
            raise OSError("bad sector")
        return i

    with pytest.raises(OSError, match="bad sector"):
        list(prefetch_into(range(10), prepare, lambda i: 10, inline_bytes=1))
