"""Spec inference for SKNet weight files (timm's selective-kernel blocks), from tensor names and shapes.

The file's tensors are renamed to the plain network they widen (each selective-kernel conv read as the
conv of its first path, timm's ConvNormAct names as torchvision's), whose structure the general reader
finds; the selective-kernel parameters are then read off the paths and the attention, and the result is
accepted only if its plan has exactly the file's names and shapes. Path dilations own no tensor: 3x3 paths
are read as timm's default kernels (3, 5, 7, ...) as dilated 3x3s. Grouped paths over split inputs have the
shapes of twice the groups over whole inputs: a fit with one group is taken (timm's skresnet50), else whole
inputs (its skresnext50_32x4d).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..spec import ResNetSpec, SKBasic, SKBottleneck
from ..spec_sknet import rd_fitting

Shapes = dict[str, tuple[int, ...]]
_BLOCK = re.compile(r"(layer\d+\.\d+)\.")


def is_sknet(shapes: Shapes) -> bool:
    return any(".paths.0.conv.weight" in k for k in shapes)


def _blocks(shapes: Shapes) -> list[str]:
    return list(dict.fromkeys(m[1] for k in shapes if (m := _BLOCK.match(k))))


def _plain(shapes: Shapes, bottleneck: bool, split: bool, stem_out: int) -> Shapes:
    """The shapes of the plain network of the same widths (the SK conv as one 3x3 of its groups)."""
    out: Shapes = {}
    cin = stem_out
    renames = {"conv1.conv.": "conv1.", "conv1.bn.": "bn1.", "conv2.conv.": "conv2.", "conv2.bn.": "bn2.",
               "conv3.conv.": "conv3.", "conv3.bn.": "bn3."}
    sk = "conv2" if bottleneck else "conv1"
    block_in = {}
    for block in _blocks(shapes):
        block_in[block] = cin
        last = shapes.get(f"{block}.conv3.conv.weight" if bottleneck else f"{block}.conv2.conv.weight")
        cin = last[0] if last else cin
    for name, shape in shapes.items():
        found = _BLOCK.match(name)
        rest = name[len(found[0]):] if found else ""
        if not found or not rest.startswith(sk + "."):
            key = next((rest.replace(a, b, 1) for a, b in renames.items() if rest.startswith(a)), rest)
            out[f"{found[1]}.{key}" if found else name] = shape
            continue
        block, inner = found[1], rest[len(sk) + 1:]
        if inner == "paths.0.conv.weight":  # the SK conv as the plain conv: its input is the whole SK input
            paths = sum(1 for k in shapes if k.startswith(f"{block}.{sk}.paths.") and k.endswith(".conv.weight"))
            sk_in = shapes[f"{block}.conv1.conv.weight"][0] if bottleneck else block_in[block]
            share = sk_in // paths if split else sk_in
            groups = share // shape[1]
            out[f"{block}.{sk}.weight"] = (shape[0], sk_in // groups, 3, 3)
        elif inner.startswith("paths.0.bn."):
            out[f"{block}.bn{sk[-1]}.{inner[len('paths.0.bn.'):]}"] = shape
    return out


def sk_structure(shapes: Shapes, structure: Callable[[Shapes], ResNetSpec],
                 signature: Callable[[ResNetSpec], Shapes], error: type[Exception]) -> ResNetSpec:
    """The spec of an SKNet file; ``structure`` / ``signature`` / ``error`` are the general reader's (io.infer,
    which imports this module: passed in, they make no import cycle)."""
    return sk_candidates(shapes, structure, signature, error)[0]


def sk_candidates(shapes: Shapes, structure: Callable[[Shapes], ResNetSpec],
                  signature: Callable[[ResNetSpec], Shapes], error: type[Exception]) -> list[ResNetSpec]:
    """Every spec an SKNet file fits, the likeliest first (a Keras model's layers settle which it is)."""

    bottleneck = any(k.endswith(".conv3.conv.weight") for k in shapes)
    first = _blocks(shapes)[0]
    sk = f"{first}.{'conv2' if bottleneck else 'conv1'}"
    kernels: list[int] = []
    while f"{sk}.paths.{len(kernels)}.conv.weight" in shapes:
        kernels.append(shapes[f"{sk}.paths.{len(kernels)}.conv.weight"][-1])
    keep_3x3 = all(k == 3 for k in kernels)
    kernel_sizes = tuple(3 + 2 * i for i in range(len(kernels))) if keep_3x3 else tuple(kernels)
    stem = "conv1.weight" if "conv1.weight" in shapes else "conv1.6.weight"
    stem_out = shapes[stem][0] if stem in shapes else 0
    tried: list[str] = []
    fits: list[ResNetSpec] = []
    for split in (True, False):  # timm's default first; with grouped paths both may fit: the first is taken
        try:
            plain = structure(_plain(shapes, bottleneck, split, stem_out))
        except (error, ValueError, KeyError, ZeroDivisionError) as exc:
            tried.append(f"split_input={split}: {exc}")
            continue
        attn = [(shapes[k][1], shapes[k][0]) for k in shapes if k.endswith(".attn.fc_reduce.weight")]
        pair = rd_fitting(attn)
        if pair is None:
            raise error(f"the selective-kernel attention widths {attn[:4]} (channels, reduced) follow no "
                                 "rd_ratio and rd_divisor")
        fields: dict[str, Any] = dict(kernel_sizes=kernel_sizes, keep_3x3=keep_3x3, split_input=split,
                                      rd_ratio=pair[0], rd_divisor=pair[1])
        try:
            block = SKBottleneck(groups=plain.groups, width_per_group=plain.width_per_group, **fields) \
                if bottleneck else SKBasic(**fields)
            spec = plain.replace(block_spec=block)
        except ValueError as exc:
            tried.append(f"split_input={split}: {exc}")
            continue
        if signature(spec) == shapes:
            fits.append(spec)
            continue
        tried.append(f"split_input={split}: the plan's tensors differ")
    if fits:  # grouped paths on split inputs and more groups on whole ones have the same shapes: timm's choices
        return sorted(fits, key=lambda f: (f.groups != 1, f.block_spec.split_input))  # type: ignore[union-attr]
    raise error("the selective-kernel tensors fit no spec (" + "; ".join(tried) + ")")
