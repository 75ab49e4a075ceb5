"""The spec of a weights file that carries none, from its tensor names and shapes.

Registered presets are tried first (a match brings the preset's values for what weights cannot show,
such as ``stride_in_1x1`` or ``bn_eps``); otherwise the structure is read off the tensors. Every guess
is accepted only if its plan has exactly the file's names and shapes, so inference never invents a
spec the weights do not fit. When two different specs fit, the caller must choose (``--arch``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from ..plan import depths_shown, explicit_width_fields, make_plan, se_ratio_of
from ..presets import get_spec, list_specs
from ..spec import FIELD_NAMES, ResNeSt, ResNetSpec
from . import infer_res2net, infer_resnest
from .infer_errors import InferenceError
from .infer_sknet import is_sknet, sk_candidates, sk_structure

Shapes = dict[str, tuple[int, ...]]


# Fields no tensor shows, with the value a file is assumed to have when presets differ only there
# (resnetaa50 and resnetblur50 hold exactly resnet50's tensors).
UNSEEN_DEFAULTS = {"anti_alias": None}


def _plainest(fits: list[ResNetSpec]) -> list[ResNetSpec]:
    """Fits that differ from another fit only in unseen fields are dropped in favour of the default
    (a resnet50 file stays resnet50; ``--arch resnetaa50`` reads it as the anti-aliased network)."""
    plain = [s for s in fits if all(getattr(s, f) == v for f, v in UNSEEN_DEFAULTS.items())]
    return [s for s in fits if s in plain or not any(s.replace(**UNSEEN_DEFAULTS) == p for p in plain)]


def _signature(spec: ResNetSpec) -> Shapes:
    return {p.name: p.shape for p in make_plan(spec).params}


def _shapes(tensors: Mapping[str, Any]) -> Shapes:
    return {name: tuple(getattr(t, "shape", t)) for name, t in tensors.items()}


def _fit_head(spec: ResNetSpec, shapes: Shapes) -> ResNetSpec | None:
    """``spec`` with the input channels and classifier the tensors show (weights often change those)."""
    first = make_plan(spec).params[0]  # the first stem convolution
    changes: dict[str, Any] = {}
    if first.name in shapes and len(shapes[first.name]) == 4:
        changes["in_channels"] = shapes[first.name][1]
    if "fc.weight" in shapes and len(shapes["fc.weight"]) == 2:
        changes.update(include_top=True, pooling=None, num_classes=shapes["fc.weight"][0])
    else:
        changes.update(include_top=False)
    try:
        return spec.replace(**changes)
    except ValueError:
        return None


def _differences(spec: ResNetSpec, base: ResNetSpec) -> str:
    a, b = spec.to_dict(flat=True), base.to_dict(flat=True)
    return ", ".join(f"{k}={a[k]!r}" for k in a if k != "name" and a[k] != b.get(k))


def infer_spec(tensors: Mapping[str, Any]) -> tuple[ResNetSpec, str]:
    """The spec whose plan has exactly these canonical names and shapes, and a sentence saying how it was found.

    ``tensors`` maps canonical names to arrays, :class:`TensorInfo` or shapes.
    """
    shapes = _shapes(tensors)
    fits = _plainest(_preset_fits(shapes))
    if len(fits) > 1:
        raise InferenceError("the tensors fit several presets (" + ", ".join(s.name for s in fits) +
                             "), which differ in ways weights do not show; choose one with spec=NAME")
    if fits:
        spec = fits[0]
        changed = _differences(spec, get_spec(spec.name))
        unseen = [f"{f}={getattr(spec, f)!r}" for f, v in UNSEEN_DEFAULTS.items() if getattr(spec, f) != v]
        also = f" ({', '.join(unseen)} is the preset's: weights do not show it)" if unseen else ""
        return spec, f"inferred from tensor names and shapes: preset {spec.name}" + (
            f" with {changed}" if changed else "") + also
    spec = _structure(shapes)
    found = _differences(spec, ResNetSpec()) or "the defaults"
    invisible = ("stride_in_1x1", "bn_eps", "bn_momentum", "pooling", "std_conv", *UNSEEN_DEFAULTS)
    if spec.norm in ("group", "evo_s0"):  # a group count leaves every tensor's shape as it is
        invisible += ("norm_groups",)
    if spec.preact:  # a bare projection conv has the same shape after an average pool, or with a moved stride
        invisible += ("downsample", "stride_block", "stem_pool_padding")
    assumed = ", ".join(f"{f}={getattr(spec, f)!r}" for f in invisible if hasattr(spec, f))
    sub = next((b for b in spec.stage_blocks if isinstance(b, ResNeSt)), None)
    if sub is not None:  # the shapes show the radix; ResNeSt's avd pools hold no tensors
        found += f", radix={sub.radix}"
        assumed += f", avd={sub.avd!r}, avd_first={sub.avd_first!r}"
    return spec, (f"inferred from tensor names and shapes (no preset matches): {found}; "
                  f"assumed, as weights do not show them: {assumed}")


def _norm_fields(shapes: Shapes) -> dict[str, Any]:
    """The norm kind its tensors name: EvoNorm's ``v``, FRN's ``tau``; no running statistics, group norm.

    A group count does not show in any shape: the default (32) is assumed where it divides every conv's
    width, else the largest count that does (a 16-wide stem cannot have 32 groups).
    """
    if _folded(shapes):
        return {"norm": "folded"}
    if any(k.endswith(".v") for k in shapes):
        kind = "evo_s0"
    elif any(k.endswith(".tau") for k in shapes):
        return {"norm": "frn"}
    elif not any(k.endswith(".running_mean") for k in shapes):
        kind = "group"
    else:
        return {}
    common = math.gcd(*(s[0] for k, s in shapes.items() if len(s) == 4 and ".se." not in k and k != "fc.weight"))
    return {"norm": kind, "norm_groups": max(g for g in range(1, 33) if common % g == 0)}


def _folded(shapes: Shapes) -> bool:
    """Batch norms folded into the convs: conv biases and no norm at all (every norm has a 1-D ``weight``)."""
    convs = [k[:-len(".weight")] for k, s in shapes.items() if k.endswith(".weight") and len(s) == 4
             and ".se." not in k]
    return bool(convs) and all(f"{c}.bias" in shapes for c in convs) and not any(
        k.endswith(".weight") and len(s) == 1 for k, s in shapes.items())


def _preset_fits(shapes: Shapes) -> list[ResNetSpec]:
    fits: list[ResNetSpec] = []
    depths = depths_shown(shapes)
    for name in list_specs():
        preset = get_spec(name)
        if tuple(preset.layers) != depths:  # cheap: most presets are ruled out before making a plan
            continue
        candidate = _fit_head(preset, shapes)
        if candidate is not None and _signature(candidate) == shapes and candidate not in fits:
            fits.append(candidate)
    return fits


def candidate_specs(tensors: Mapping[str, Any], preferred: str | None = None) -> list[ResNetSpec]:
    """Every spec the tensors fit: the matching presets (``preferred`` first, when it is a preset name
    the tensors fit), else the structure read off the tensors.

    Fields weights cannot show take the presets' (or the defaults') values; a caller that sees more
    (a Keras model's layer configs) settles them, see :mod:`resnet_core.io.keras_spec`.
    """
    shapes = _shapes(tensors)
    fits = _preset_fits(shapes)
    if preferred in list_specs():
        named = _fit_head(get_spec(preferred), shapes)
        if named is not None and _signature(named) == shapes:
            fits = [named] + [s for s in fits if s.name != preferred]
    if not fits and is_sknet(shapes):  # grouped selective kernels: split or whole inputs have the same shapes
        return sk_candidates(shapes, _structure, _signature, InferenceError)
    return fits or [_structure(shapes)]


def _stage_widths(shapes: Shapes, stage: int, depth: int) -> tuple[str, list[tuple[int, ...]]]:
    """A stage's block type and each block's main-conv output widths."""
    if infer_resnest.is_resnest_stage(shapes, stage):
        found = [infer_resnest.main_widths(shapes, f"layer{stage}.{i}") for i in range(depth)]
        if any(w is None for w in found):
            raise InferenceError(f"layer{stage} lacks a tensor of the ResNeSt blocks its first block shows "
                                 "(conv1, conv2.conv, conv2.fc1, conv2.fc2, conv3)")
        return "resnest", cast(list[tuple[int, ...]], found)
    block = "bottleneck" if f"layer{stage}.0.conv3.weight" in shapes else "basic"
    convs = (1, 2, 3) if block == "bottleneck" else (1, 2)
    names = [[f"layer{stage}.{i}.conv{k}.weight" for k in convs] for i in range(depth)]
    missing = next((n for block_names in names for n in block_names if n not in shapes), None)
    if missing is not None:
        raise InferenceError(f"no tensor {missing!r}, which a {block} block has")
    return block, [tuple(shapes[n][0] for n in block_names) for block_names in names]


def _structure(shapes: Shapes) -> ResNetSpec:
    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise InferenceError(f"no tensor {name!r}, which every ResNet of this library has")
        return shapes[name]

    if is_sknet(shapes):  # SKNet's selective kernels: read through the plain network of the same widths
        return sk_structure(shapes, _structure, _signature, InferenceError)
    fields: dict[str, Any] = {}
    if "conv1.weight" in shapes:
        stem = shape("conv1.weight")
        fields.update(stem_width=stem[0], in_channels=stem[1])
    else:  # timm's deep stems: conv1.0 / conv1.3 / conv1.6
        first, middle = shape("conv1.0.weight"), shape("conv1.3.weight")
        fields.update(stem="deep" if first[0] == middle[0] else "deep_tiered", stem_width=middle[0],
                      in_channels=first[1])
    layers: list[int] = []
    while f"layer{len(layers) + 1}.0.conv1.weight" in shapes:
        stage, depth = len(layers) + 1, 0
        while f"layer{stage}.{depth}.conv1.weight" in shapes:
            depth += 1
        layers.append(depth)
    if not layers:
        raise InferenceError("no residual blocks (layer1.0.conv1.weight)")
    fields["layers"] = tuple(layers)
    res2net = infer_res2net.fields(shapes, layers)  # Res2Net: its sub-spec; its stages read its own way
    stages = res2net.pop("stages") if res2net else [_stage_widths(shapes, s + 1, depth)
                                                     for s, depth in enumerate(layers)]
    bottlenecks = [s + 1 for s, (block, _) in enumerate(stages) if block == "bottleneck"]
    groups = 1
    if bottlenecks:  # conv2's input over its input per group
        conv2 = shape(f"layer{bottlenecks[0]}.0.conv2.weight")
        groups = max(1, shape(f"layer{bottlenecks[0]}.0.conv1.weight")[0] // max(1, conv2[1]))
    resnest = [s + 1 for s, (block, _) in enumerate(stages) if block == "resnest"]
    if resnest:  # its radix and cardinality (conv2.conv is grouped by both)
        fields["block_spec"] = infer_resnest.block_spec(shapes, resnest[0])
        groups = fields["block_spec"].groups
    fields.update(res2net or {**explicit_width_fields(stages), "groups": groups})
    # Pre-activation networks bias only the convs no norm follows, so look at any conv's bias.
    fields["conv_bias"] = any(k.endswith(".bias") and len(shapes.get(k[:-4] + "weight", ())) == 4
                              and ".se." not in k and ".conv2.fc" not in k for k in shapes)  # ResNeSt's fc1/fc2
    fields["preact"] = "layer1.0.norm1.weight" in shapes
    fields["replace_stem_pool"] = "maxpool.0.weight" in shapes
    # a projection where nothing changes (keras-hub's basic_block_vd, the bottlenecks of timm's ResNetV2)
    stem_out = fields["stem_width"] * (1 if fields.get("stem", "7x7") == "7x7" else 2)
    fields["project_first"] = stem_out == stages[0][1][0][-1] and any(
        k.startswith("layer1.0.downsample.") for k in shapes)
    downs = [v for k, v in shapes.items() if k.endswith(".downsample.0.weight") and len(v) == 4]
    if downs and not fields["preact"]:
        fields["down_kernel_size"] = max(v[-1] for v in downs)
    if "layer1.0.se.conv.weight" in shapes:
        fields["attention"] = "eca"
        fields["eca_kernels"] = tuple(shape(f"layer{s + 1}.0.se.conv.weight")[-1] for s in range(len(layers)))
    fields.update(_norm_fields(shapes))
    # (folded: no norm follows, so the projection conv itself is downsample.1, after the pool)
    if any(k.endswith(".downsample.2.weight") or (k.endswith(".downsample.1.weight") and len(v) == 4)
           for k, v in shapes.items()):
        fields["downsample"] = "avg"
    if "fc.weight" in shapes:
        fields.update(include_top=True, num_classes=shape("fc.weight")[0])
    else:
        fields.update(include_top=False)
    ratio_field: dict[str, Any] = {}
    se = [(s[1], s[0]) for k, s in shapes.items() if k.endswith(".se.fc1.weight") and len(s) == 4]
    if se:
        fields["attention"] = "se"
        ratio = se_ratio_of(se)
        if ratio is None:
            raise InferenceError(f"the squeeze-excitation widths {se[:4]} (channels, reduced) follow no "
                                 "se_ratio rounded to a multiple of 8")
        ratio_field = {"se_ratio": ratio}
    unknown = sorted(set(fields) - FIELD_NAMES)
    if unknown:  # pragma: no cover - only if spec fields are renamed
        raise InferenceError(f"this resnet-core has no spec field(s) {unknown}")
    guess = None
    # Stages of equal width meet without a projection when the stride moves to the previous stage's last
    # block (stride_block="last", a max-pool shortcut), or when they dilate instead of striding (output_stride
    # 16 or 8): that is how such a file shows it.
    extras: tuple[dict[str, Any], ...] = ({}, {"stride_block": "last"}, {"output_stride": 16}, {"output_stride": 8})
    for extra in extras:
        try:
            trial = ResNetSpec(**fields, **ratio_field, **extra)
            signature = _signature(trial)
        except ValueError as exc:
            if extra:
                continue
            raise InferenceError(f"the shapes suggest an invalid spec ({exc})") from None
        if signature == shapes:
            return trial
        guess = guess or trial
    guess = cast(ResNetSpec, guess)  # the first trial raised or made one
    expected = _signature(guess)
    for name, got in shapes.items():
        if expected.get(name) != got:
            want = "absent" if name not in expected else f"shape {expected[name]}"
            raise InferenceError(f"the closest guess ({_differences(guess, ResNetSpec()) or 'resnet50'}) does not fit: "
                                 f"tensor {name} has shape {got}, the guess expects {want}")
    missing = [n for n in expected if n not in shapes]
    raise InferenceError(f"the closest guess expects tensors the file lacks, starting with {missing[0]}")
