"""Training regularisers of the spec: dropout before the classifier (``drop_rate``) and stochastic depth on
every block's residual branch (``drop_path_rate``), both identities in eval mode.

The per-block drop-path rates are the plan's (:func:`drop_path_schedule`, timm's ResNet rule: rising linearly
from 0 at the first block to ``drop_path_rate`` at the last); adapters and peers only read them. Peers and
Keras files store the per-block rates, so reading a model back finds the one ``drop_path_rate`` whose
schedule gives them (:func:`rate_of_schedule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Schedule = Callable[[float, int], Sequence[float]]  # (drop_path_rate, number of blocks) -> each block's rate
DROP_FIELDS = ("drop_rate", "drop_path_rate")  # the spec's training regularisers: no weights, no eval effect


def drop_path_schedule(drop_path_rate: float, num_blocks: int) -> tuple[float, ...]:
    """Each block's drop-path rate, computed as timm's ``make_blocks`` does (the same float expression,
    so the values are timm's bit for bit): ``rate * index / (num_blocks - 1)``; one block gets 0."""
    if num_blocks == 1:  # timm divides by zero here; the spec refuses a rate that could not act
        return (0.0,)
    return tuple(drop_path_rate * i / (num_blocks - 1) for i in range(num_blocks))


def rate_of_schedule(rates: Sequence[float], schedule: Schedule = drop_path_schedule,
                     float32: bool = False) -> float | None:
    """The ``drop_path_rate`` whose ``schedule`` (by default :func:`drop_path_schedule`) gives exactly ``rates``,
    one per block; None when no rate does (per-block rates that follow no linear rule).

    The last block's rate is the candidate, its shortest decimal form (``0.2``, not ``0.20000000000000004``)
    preferred when it gives the same schedule; ``float32``: first the shortest form of its single-precision
    value (timm's ResNetV2 computes its schedule with ``torch.linspace`` in float32).
    """
    rates = [float(r) for r in rates]
    if not rates:
        return None
    last = rates[-1]
    candidates = [float(f"{last:.{digits}g}") for digits in range(1, 18)] + [last]
    if float32:
        candidates.insert(0, float(str(np.float32(last))))
    for rate in candidates:
        if 0.0 <= rate < 1.0 and [float(r) for r in schedule(rate, len(rates))] == rates:
            return rate
    return None
