"""Batch norms folded into the convs before them: the inference form of a post-activation ResNet.

In eval mode a batch norm is an affine map per channel, ``gamma * (y - mean) / sqrt(var + eps) + beta``, and
so is the conv before it in its output channels: the two compose into one conv with a bias. This is what graph
optimisers (ONNX Runtime's, TensorRT's) do to an exported model; :func:`fold_norms` does it on canonical
weights, so a folded file can be built, converted and exported like any other (spec ``norm="folded"``).
Numpy only: the arithmetic runs in float64 and each result is cast back to its kernel's dtype.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import to_numpy
from .mapping import check_weights
from .plan import ConvNorm, Mixer, Plan, make_plan
from .presets import get_spec
from .spec import ResNetSpec, SpecError


def fold_norms(spec: str | ResNetSpec, weights: Mapping[str, Any]) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    """The folded spec and weights of a post-activation batch-norm network, equal to it in eval mode.

    Each conv ``w`` (bias ``b``, or 0) followed by a batch norm becomes
    ``w' = w * s`` and ``b' = beta + (b - mean) * s`` per output channel, ``s = gamma / sqrt(var + eps)``;
    every other tensor (squeeze-excitation, ECA, the classifier) is kept. Its canonical names stay the convs'
    (``conv1.weight``, ``conv1.bias``, ``layer1.0.downsample.0.bias``; no ``bn1.*``).

    Args:
        spec: A preset name or spec with ``norm="batch"`` and ``preact=False``.
        weights: Its canonical weights (numpy arrays or framework tensors), every tensor present.

    Returns:
        ``(folded_spec, folded_weights)``: the spec with ``norm_spec=Folded()`` (same name) and its weights in
        the folded plan's order, each folded tensor in its kernel's dtype.

    Raises:
        SpecError: The spec's norms cannot fold (not batch norms, already folded, pre-activation, a block
            type whose norms sit inside its own operator, weight-standardised convs).
        WeightsMismatchError: ``weights`` do not fit ``spec``.

    Example:
        >>> import resnet_core as rc
        >>> from resnet_core.testing import random_weights
        >>> folded_spec, folded = rc.fold_norms("resnet18", random_weights("resnet18"))
        >>> folded_spec.norm, folded_spec.conv_bias, "bn1.weight" in folded, folded["conv1.bias"].shape
        ('folded', True, False, (64,))
    """
    spec = get_spec(spec)
    _check_foldable(spec)
    folded_spec = spec.replace(norm="folded", zero_init_residual=False)  # an initialisation: nothing to keep
    plan = make_plan(spec)
    check_weights(plan, weights, strict=True)
    out: dict[str, np.ndarray] = {}
    for unit in _units(plan):
        conv, norm = unit.conv, unit.norm
        if norm is None:  # pragma: no cover - every conv unit of a post-activation plan has its norm
            continue
        kernel = to_numpy(weights[f"{conv.name}.weight"])
        w = kernel.astype(np.float64)
        b = to_numpy(weights[f"{conv.name}.bias"]).astype(np.float64) if conv.bias else np.zeros(w.shape[0])
        gamma, beta, mean, var = (to_numpy(weights[f"{norm.name}.{suffix}"]).astype(np.float64)
                                  for suffix in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + norm.eps)
        out[f"{conv.name}.weight"] = (w * scale[:, None, None, None]).astype(kernel.dtype)
        out[f"{conv.name}.bias"] = (beta + (b - mean) * scale).astype(kernel.dtype)
    # the rest as it was (copies), every tensor in the folded plan's order
    return folded_spec, {p.name: out[p.name] if p.name in out else np.array(to_numpy(weights[p.name]))
                         for p in make_plan(folded_spec).params}


def _check_foldable(spec: ResNetSpec) -> None:
    """One error naming the field that keeps the norms from folding."""
    where = f"Cannot fold the norms of spec {spec.name!r}: "
    if spec.norm == "folded":
        raise SpecError(where + "norm='folded' (they are folded already)")
    if spec.norm != "batch":
        raise SpecError(where + f"norm={spec.norm!r} (only batch norms fold into convs: the others normalise by "
                        "statistics of each input, not by stored ones)")
    if spec.preact:
        raise SpecError(where + "preact=True (pre-activation norms come before the convs, so no conv output "
                        "can absorb them)")
    if spec.std_conv:
        raise SpecError(where + "std_conv=True (a weight-standardised conv would undo the folded scale)")
    spec.replace(norm="folded", zero_init_residual=False)  # the spec's own rule for the rest (block types)


def _units(plan: Plan) -> Iterator[ConvNorm]:
    """Every conv unit of ``plan``: the stem's, then per block its main path and its projection."""
    yield from plan.stem.units
    for block in plan.blocks:
        for unit in block.main:
            if isinstance(unit, Mixer):  # pragma: no cover - refused by the folded spec
                raise SpecError(f"Cannot fold the norms of {unit.name}: they are inside its block type's operator")
            yield unit
        if block.shortcut is not None:
            yield block.shortcut


def fold_file(source: Any, target: str | os.PathLike, spec: Any = None, dtype: str | None = None,
              overwrite: bool = False) -> Any:
    """``resnet-core convert --fold-norms``: the folded weights of any source (a weights file, a model folder, a
    hub name) written to ``target`` in the format its extension names, the trained-with record kept.

    The output is checked before anything is read, and written whole or not at all (as ``convert`` does).
    Returns the :class:`~resnet_core.io.api.ConvertResult`.
    """
    from .io.api import LoadedWeights, convert_loaded
    from .io.atomic import check_output
    from .io.formats import format_for
    from .sources import read_weights
    from .sources.resolve import label

    format_for(target)
    check_output(Path(target), overwrite)
    loaded = read_weights(source, spec=spec)
    folded_spec, folded = fold_norms(loaded.spec, loaded.weights)
    result = convert_loaded(LoadedWeights(folded_spec, folded, loaded.info), label(source), target, dtype, overwrite)
    return dataclasses.replace(result, note=f"norms folded: spec {folded_spec.name} (norm='folded') from "
                                            f"{label(source)}")
