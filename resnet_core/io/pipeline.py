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
from typing import TypeVar

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
