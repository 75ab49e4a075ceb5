"""How two results are compared and what counts as agreement, with numpy alone.

Relative error is max |diff| / max |reference| per tensor (:func:`resnet_core.arrays.relative_error`),
so a tensor of small values is judged by its own scale, and a layer's figure does not depend on
how many elements it has.
"""

from __future__ import annotations

import numpy as np

from ..arrays import relative_error
from ..plan import Plan

# Largest relative error accepted against the reference, by dtype, by what is compared and, where the
# engines measured apart, by engine ("*": any other). Set at about twice the worst figure measured on
# CPU (tiny_resnext at 64x64, resnet50 at 224x224, eval and train; docs/parity.md has every figure).
# Outputs and running statistics in fp32 are rounding noise (~1e-6): 1e-5 catches any conversion bug.
# fp32 gradients are judged per tensor by :func:`grad_tolerance` whenever the reference has float64
# gradients (torch); the "grad" figure here is the fallback for a reference without them. Mixed-
# precision bounds are set from the measured figures; in bf16 even torch's gradients differ from fp32 by ~1.
Tolerance = float | dict[str, float]
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "float32": {"activation": 1e-5, "running": 1e-5, "grad": 1e-1},
    "bfloat16": {"activation": 1e-1, "running": {"keras-jax": 1e-2, "*": 5e-3}, "grad": 1.5},
    "float16": {"activation": 1e-2, "running": 1e-3, "grad": 1.0},
}
KINDS = ("activation", "running", "grad")

# An fp32 gradient is only as well defined as rounding leaves it: a ReLU mask or a batch-norm backward
# turns a 1e-7 change in the forward pass into up to 2e-2 (resnet50 at 224). So each gradient tensor is
# judged against the reference's own fp32-vs-float64 error for that tensor (``ref64``): an engine computing
# it as carefully lands within a few times that (measured: docs/parity.md). The basis never goes below
# GRAD_BASIS_FLOOR (about two fp32 ulps relative), so an exactly-rounded tensor (ref64 near 0) is not
# asked to be more exact than fp32 arithmetic can be.
GRAD_MULTIPLE = 10.0
GRAD_BASIS_FLOOR = 1e-7


def tolerance_for(dtype: str, kind: str, engine: str, reference: str = "torch") -> float:
    """The tolerance of ``engine`` against ``reference`` for ``kind`` at ``dtype``."""
    value = TOLERANCES[dtype][kind]
    if isinstance(value, dict):  # measured against torch; between two other engines, the loosest bound
        return value.get(engine, value["*"]) if reference == "torch" else max(value.values())
    return float(value)


def grad_basis(ref64: float) -> float:
    """What an fp32 gradient's error is measured in: the reference's own fp32-vs-float64 error, floored."""
    return max(ref64, GRAD_BASIS_FLOOR)


def grad_tolerance(ref64: float) -> float:
    """The bound for an fp32 gradient whose reference is ``ref64`` (relative) from its float64 value."""
    return GRAD_MULTIPLE * grad_basis(ref64)


def multiple_of(max_rel: float, ref64: float) -> float:
    """``max_rel`` in units of :func:`grad_basis`: within tolerance while at most GRAD_MULTIPLE."""
    return max_rel / grad_basis(ref64)


def compare(output: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """max abs, max rel, mean abs and cosine similarity of ``output`` against ``reference``, and the
    reference's scale (max |reference|, the denominator of max rel)."""
    out = np.asarray(output, np.float64)
    ref = np.asarray(reference, np.float64)
    diff = np.abs(out - ref)
    norms = np.linalg.norm(out) * np.linalg.norm(ref)
    cosine = float(np.dot(out.ravel(), ref.ravel()) / norms) if norms > 0 else float(np.array_equal(out, ref))
    return {
        "max_abs": float(diff.max(initial=0.0)),
        "max_rel": relative_error(out, ref),
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "cosine": cosine,
        "scale": float(np.abs(ref).max(initial=0.0)),
    }


def topk_agreement(output: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Fraction of samples whose top-k classes (as a set) are the same in both; k is capped at the class count."""
    k = min(k, reference.shape[-1])
    top = lambda a: np.sort(np.argsort(-np.asarray(a, np.float64), axis=-1, kind="stable")[:, :k], axis=-1)  # noqa: E731
    return float(np.mean(np.all(top(output) == top(reference), axis=-1)))


def bn_counts(plan: Plan, batch: int, height: int, width: int) -> dict[str, int]:
    """Values per channel each batch norm averages over in training (N*H*W at its input), by norm name."""
    return {name: batch * h * w for name, (h, w) in plan.norm_sizes(height, width).items()}


def to_unbiased_running_var(new: np.ndarray, old: np.ndarray, momentum: float, count: int) -> np.ndarray:
    """A Keras running variance (biased batch variance) restated in PyTorch's convention (unbiased).

    Keras: ``new = (1-m) old + m var_b``; PyTorch: ``(1-m) old + m var_b n/(n-1)``; hence
    ``new + (new - (1-m) old) / (n-1)``, exact algebra with no division by the momentum.
    """
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    return new + (new - (1.0 - momentum) * old) / (count - 1)


def to_biased_running_var(new: np.ndarray, old: np.ndarray, momentum: float, count: int) -> np.ndarray:
    """The inverse of :func:`to_unbiased_running_var`: PyTorch's running variance in Keras's convention."""
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    return new - (new - (1.0 - momentum) * old) / count


def judge_gradient(engine: np.ndarray, reference: np.ndarray, reference64: np.ndarray,
                   reference_followed: np.ndarray | None = None,
                   engine_followed: np.ndarray | None = None) -> dict[str, float]:
    """One engine's fp32 gradient tensor judged against the reference's.

    ``reference64`` is the reference's float64 gradient (its own float64 ReLU masks and max-pool winners);
    ``*_followed`` are float64 gradients following the reference's and the engine's own fp32 pattern
    (:mod:`resnet_core.parity.ties`). Raw: the engine against the reference, in units of the reference's
    error against ``reference64`` (``raw_multiple``). With both followed gradients, what is judged is the
    engine's error against its own followed one (``tie_aware_rel``) in units of the reference's against
    its own (``multiple``, ``tolerance``), so a near-tie resolved either way costs nothing and arithmetic
    still counts in full; ``tie_effect`` is how far the engine's ties alone move the float64 gradient.
    """
    raw_basis = relative_error(reference, reference64)
    out = {"raw_multiple": multiple_of(relative_error(engine, reference), raw_basis),
           "tolerance": grad_tolerance(raw_basis)}
    out["multiple"] = out["raw_multiple"]
    if reference_followed is not None and engine_followed is not None:
        basis = relative_error(reference, reference_followed)
        out["tie_aware_rel"] = relative_error(engine, engine_followed)
        out["tie_effect"] = relative_error(engine_followed, reference_followed)
        out["multiple"] = multiple_of(out["tie_aware_rel"], basis)
        out["tolerance"] = grad_tolerance(basis)
    return out
