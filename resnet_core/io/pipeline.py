"""Prepare the next tensors while the current one is written: bounded read-ahead on worker threads.

numpy copies (casts, layout transposes) and file reads release the GIL, so on two cores preparing and
writing overlap. At most ``max_bytes`` of prepared tensors wait at any time (always at least one), which
keeps a conversion's memory at one copy of the model plus this window. Small tensors (batch-norm
vectors, most of a ResNet's tensors by count) are prepared in line: a hand-off between threads costs
more than they do, a lot more on a busy machine.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

WINDOW_BYTES = 128 * 1024 * 1024
INLINE_BYTES = 1024 * 1024


def prefetch(items: Iterable[T], prepare: Callable[[T], R], size: Callable[[T], int], workers: int = 2,
             max_bytes: int = WINDOW_BYTES, inline_bytes: int = INLINE_BYTES) -> Iterator[tuple[T, R]]:
    """``(item, prepare(item))`` in order; items of ``inline_bytes`` or more are prepared ahead on threads."""
    pending = iter(items)
    queue: collections.deque[tuple[T, int, Future[R] | None]] = collections.deque()
    in_flight = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="resnet-core-io") as pool:
        try:
            while True:
                while not queue or in_flight < max_bytes:
                    try:
                        item = next(pending)
                    except StopIteration:
                        break
                    n = size(item)
                    ahead = n >= inline_bytes
                    queue.append((item, n, pool.submit(prepare, item) if ahead else None))
                    in_flight += n if ahead else 0
                if not queue:
                    return
                item, n, future = queue.popleft()
                if future is None:
                    result = prepare(item)
                else:
                    result = future.result()
                    in_flight -= n
                yield item, result
                del result
        finally:
            for _, _, future in queue:
                if future is not None:
                    future.cancel()


def prefetch_into(items: Iterable[T], prepare: Callable[[T, np.ndarray | None], R], size: Callable[[T], int],
                  inline_bytes: int = INLINE_BYTES) -> Iterator[tuple[T, R]]:
    """``(item, prepare(item, buffer))`` in order, for results the consumer is done with before it asks for the
    next (a writer copying them out). Items of ``inline_bytes`` or more are prepared one ahead on a thread,
    alternately into two uint8 buffers that serve the whole run: new arrays for a whole model cost page
    faults, and under load as much as the copies themselves. Smaller items are prepared in line, with no
    buffer. Memory: twice the largest item."""
    items = list(items)
    sizes = [size(item) for item in items]
    big = [i for i, n in enumerate(sizes) if n >= inline_bytes]
    capacity = max((sizes[i] for i in big), default=0)
    buffers = [np.empty(capacity, np.uint8) for _ in range(2 if big else 0)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet-core-io") as pool:

        def ahead(n: int) -> Future[R] | None:  # the n-th big item, into the buffer the (n-2)-th one used
            return pool.submit(prepare, items[big[n]], buffers[n % 2]) if n < len(big) else None

        future, n = ahead(0), 0
        try:
            for index, item in enumerate(items):
                if n < len(big) and index == big[n]:
                    result = cast(Future[R], future).result()
                    n += 1
                    future = ahead(n)  # the other buffer: its item was consumed before this one was asked for
                    yield item, result
                else:
                    yield item, prepare(item, None)
        finally:
            if future is not None:
                future.cancel()
