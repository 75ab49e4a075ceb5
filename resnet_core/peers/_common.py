"""Framework-free pieces every peer shares: naming, output-stride and SE-ratio inference, spec checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..drop_rates import DROP_FIELDS
from ..name_tables import PeerError, Table
from ..plan import Conv, Norm, Plan, SqueezeExcite, make_plan, se_ratio_of
from ..presets import get_spec, list_specs
from ..spec import OUTPUT_STRIDES, ResNetSpec


def named(spec: ResNetSpec, fallback: str) -> ResNetSpec:
    """The spec under a preset's name when it is that preset, else under the peer's own name."""
    for name in list_specs():
        if get_spec(name) == spec:
            return spec.replace(name=name)
    return spec.replace(name=fallback or "resnet")


def match_output_stride(spec: ResNetSpec, check: Callable[[Plan], list[str]], peer: str) -> ResNetSpec:
    """The output stride whose plan ``check`` finds no fault with (strides and dilations decide it).

    Peers store strides and dilations per convolution; ResNetSpec only has ``output_stride``, which
    dilates the last stages. Any other pattern is refused with the faults of the closest candidate.
    """
    best: list[str] | None = None
    for stride in sorted(OUTPUT_STRIDES, reverse=True):
        candidate = spec.replace(output_stride=stride)
        faults = check(make_plan(candidate))
        if not faults:
            return candidate
        if best is None or len(faults) < len(best):
            best = faults
    raise PeerError(
        f"The {peer} model's structure is not one ResNetSpec can express (no output_stride in "
        f"{OUTPUT_STRIDES} reproduces its strides, dilations and shapes): {'; '.join(best or [])[:2000]}"
    )


def stem_counted_output_stride(spec: ResNetSpec) -> int:
    """The output_stride to give timm, which counts the stem as stride 4 whether or not it pools.

    Without the stem pool every dilation starts one stage later in the plan, which timm reproduces
    with twice the output stride (capped at 32: without the pool, 16 and 32 build the same network).
    """
    return spec.output_stride if spec.stem_pool else min(32, 2 * spec.output_stride)


def se_ratio_for(widths: Iterable[tuple[int, int]], peer: str) -> float:
    """A reduction ratio reproducing every (channels, reduced) pair under timm's rounding."""
    pairs = list(widths)
    ratio = se_ratio_of(pairs)
    if ratio is not None:
        return ratio
    raise PeerError(
        f"The {peer} model's squeeze-excitation widths {pairs[:4]} follow no single ratio rounded to a "
        "multiple of 8: ResNetSpec.se_ratio cannot express them (per-block rd_channels or another rd_divisor)"
    )


def keras_to_torch_momentum(momentum: float) -> float:
    """PyTorch's momentum from Keras's, rounded so 1 - (1 - m) gives m back exactly."""
    return round(1.0 - float(momentum), 12)


def unsupported(peer: str, problems: list[str]) -> PeerError:
    return PeerError(f"Cannot express this {peer} model as a ResNetSpec: " + "; ".join(problems))


# Per-stage and per-block width fields: only timm's ResNet builds them (a block class and channels per stage,
# and its pruning); every other peer has one block type and doubled widths.
PER_STAGE_FIELDS = ("block_types", "planes", "block_widths", "eca_kernels")


def refuse_export(spec: ResNetSpec, peer: str, problems: list[str], norms: tuple[str, ...] = ("batch",),
                  std_conv: bool = False, per_stage: bool = False,
                  blocks: tuple[str, ...] | None = ("basic", "bottleneck"), drop_rates: tuple[str, ...] = ()) -> None:
    """Raise naming every problem; ``norms`` / ``std_conv`` / ``per_stage`` / ``blocks`` / ``drop_rates``: the norm
    kinds, weight standardisation, per-stage widths, block types (None: not checked) and training regularisers (of
    ``drop_rate``, ``drop_path_rate``) the peer can build (most peers know one block type, doubled widths, batch
    norm and no drop rates only, so a spec with more is refused here, once, rather than exported without them)."""
    problems = list(problems)
    if blocks is not None:
        problems += [f"block type {kind!r} ({peer} has no such block)"
                     for kind in dict.fromkeys(spec.stage_block_types) if kind not in blocks]
    problems += [f"{f}={getattr(spec, f)!r} ({peer} models have no {f} option: the exported model would "
                 "train without it; export spec.replace(" + f"{f}=0.0) to drop it knowingly)"
                 for f in DROP_FIELDS if getattr(spec, f) and f not in drop_rates]
    if not per_stage:
        problems += [f"{f}={getattr(spec, f)!r} ({peer} builds one block type and widths doubled per stage)"
                     for f in PER_STAGE_FIELDS if getattr(spec, f) is not None]
    if spec.norm == "folded":  # no peer's network has a folded form (its norms are layers of their own)
        problems.append(f"norm='folded' (batch norms folded into the convs: {peer} has no folded form; give it "
                        "the unfolded spec and weights)")
    elif spec.norm not in norms:
        problems.append(f"norm={spec.norm!r} ({peer} builds {' / '.join(norms)} norms only)")
    if spec.std_conv and not std_conv:
        problems.append(f"std_conv=True ({peer} has no weight-standardised convolution)")
    if problems:
        raise PeerError(f"{peer} cannot build spec {spec.name!r}: " + "; ".join(problems))


def comparable(spec: ResNetSpec) -> dict:
    """Fields that must survive a round trip (the flat view: parameters of options not chosen at their defaults)."""
    data = spec.to_dict(flat=True)
    data.pop("zero_init_residual")  # an initialisation choice; no live model records it
    plan = make_plan(spec)
    # Ratios that round to the same widths build the same network: compare the widths.
    data["se_ratio"] = tuple(b.attention.fc1.out_channels for b in plan.blocks
                             if isinstance(b.attention, SqueezeExcite))
    data["project_first"] = plan.projections  # where it projects nothing new
    return data


def check_round_trip(spec: ResNetSpec, back: ResNetSpec, peer: str) -> None:
    """Refuse an export whose peer model would not import back to ``spec``."""
    want, got = comparable(spec), comparable(back)
    diff = [f"{k}: {want[k]!r} -> {got[k]!r}" for k in want if k != "name" and want[k] != got.get(k)]
    if diff:
        raise PeerError(f"{peer} cannot express spec {spec.name!r} exactly; the exported model differs in " +
                        ", ".join(diff))


def check_units(plan: Plan, table: Table, layers: dict[str, Any],
                check_conv: Callable[[Conv, Any, str], list[str]],
                check_norm: Callable[[Norm, Any, str], list[str]]) -> list[str]:
    """Every conv and norm of ``plan`` against the peer layer the table maps it to (by peer name).

    ECA's channel convs are left to the one peer that has them (timm).
    """
    faults: list[str] = []
    for item in plan.modules():
        if not isinstance(item, (Conv, Norm)):
            continue
        where = table.peer_module(item.name)
        check: Callable[..., list[str]] = check_conv if isinstance(item, Conv) else check_norm
        faults += check(item, layers.get(where), where)
    return faults
