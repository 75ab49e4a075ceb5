"""Hypothesis strategies over the ResNetSpec option space, and the settings every property test uses.

Adding a spec option is one entry in ``VALID`` (a field -> strategy table); add one to ``RAW`` too when
the option has values or combinations the spec must refuse. An entry is a strategy, or a function of
the fields drawn so far (entries are drawn in table order) returning one, for options valid only
with others (groups only with the bottleneck, say). ``test_every_spec_field_has_a_strategy`` fails
when a spec field has no entry, so a new option cannot be left out of the search unnoticed.

Widths and depths are small so that hundreds of networks build in seconds; sizes are odd on purpose.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from resnet_core.spec import (
    ANTI_ALIASES,
    ATTENTIONS,
    BLOCKS,
    DOWNSAMPLES,
    FUSED_NORMS,
    NORMS,
    OUTPUT_STRIDES,
    POOL_PADDINGS,
    POOLINGS,
    STEMS,
    STRIDE_BLOCKS,
    ResNetSpec,
    SpecError,
)

Choice = SearchStrategy | Callable[[Mapping[str, Any]], SearchStrategy]

# Fields a spec has but the search leaves alone (a label, not architecture).
NOT_SEARCHED = ("name",)


def _bottleneck(drawn: Mapping[str, Any]) -> bool:
    """Every stage is a bottleneck (groups and width_per_group are the bottleneck's)."""
    return set(_types(drawn)) == {"bottleneck"}


def _types(drawn: Mapping[str, Any]) -> tuple[str, ...]:
    return drawn["block_types"] or (drawn["block"],) * len(drawn["layers"])


def _block_types(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None, or a type per stage, stage 1's being ``block``."""
    rest = st.lists(st.sampled_from(BLOCKS), min_size=len(drawn["layers"]) - 1, max_size=len(drawn["layers"]) - 1)
    return st.none() | rest.map(lambda types: (drawn["block"], *types))


def _block_widths(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None, or every block's conv widths with one output width per stage (widths that norm_groups divide)."""
    width = st.sampled_from((4, 8, 12))

    def stage(block: str, depth: int) -> SearchStrategy:
        inner = st.lists(width, min_size=2 if block == "bottleneck" else 1, max_size=2 if block == "bottleneck" else 1)
        return st.tuples(width, st.lists(inner, min_size=depth, max_size=depth)).map(
            lambda drawn_stage: tuple((*inner, drawn_stage[0]) for inner in drawn_stage[1]))

    stages = st.tuples(*(stage(b, n) for b, n in zip(_types(drawn), drawn["layers"], strict=True)))
    return st.none() | stages.map(lambda per_stage: tuple(w for blocks in per_stage for w in blocks))


def _planes(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None, or a base width per stage from ``base_planes`` (explicit block widths replace them)."""
    if drawn["block_widths"] is not None:
        return st.none()
    rest = st.lists(st.integers(1, 12), min_size=len(drawn["layers"]) - 1, max_size=len(drawn["layers"]) - 1)
    return st.none() | rest.map(lambda planes: (drawn["base_planes"], *planes))


def _eca_kernels(drawn: Mapping[str, Any]) -> SearchStrategy:
    if drawn["attention"] != "eca":
        return st.none()
    n = len(drawn["layers"])
    return st.none() | st.lists(st.sampled_from((1, 3, 5, 7)), min_size=n, max_size=n).map(tuple)


def _width_per_group(drawn: Mapping[str, Any]) -> SearchStrategy:
    """Bottleneck: every width from the smallest that leaves stage 1 a channel (planes * wpg >= 64) up."""
    if not _bottleneck(drawn):
        return st.just(64)
    if drawn["block_widths"] is not None:
        return st.just(64)
    smallest = -(-64 // drawn["base_planes"])
    return st.integers(smallest, max(smallest, 32))


# Valid specs. Dependent entries read the fields above them.
VALID: dict[str, Choice] = {
    "block": st.sampled_from(BLOCKS),
    "layers": st.lists(st.integers(1, 2), min_size=1, max_size=4).map(tuple),
    "block_types": _block_types,
    "block_widths": _block_widths,
    "base_planes": lambda d: st.just(64) if d["block_widths"] is not None else st.integers(1, 12),
    "planes": _planes,
    "groups": lambda d: st.sampled_from((1, 2, 3, 4)) if _bottleneck(d) and d["block_widths"] is None
    else st.just(1),
    "width_per_group": _width_per_group,
    "in_channels": st.integers(1, 4),
    "stem": st.sampled_from(STEMS),
    "stem_width": lambda d: st.integers(4 if d["stem"] == "deep_tiered" else 1, 12),
    "stem_pool": st.booleans(),
    "stem_pool_padding": st.sampled_from(POOL_PADDINGS),
    "downsample": st.sampled_from(DOWNSAMPLES),
    "attention": st.sampled_from(ATTENTIONS),
    "se_ratio": st.sampled_from((1 / 16, 0.25, 1.0)) | st.floats(0.01, 1.0),
    "eca_kernels": _eca_kernels,
    "preact": st.booleans(),
    "norm": lambda d: st.sampled_from(NORMS if d["preact"] else tuple(n for n in NORMS if n not in FUSED_NORMS)),
    "norm_groups": st.sampled_from((1, 2, 4)),  # widths it does not divide are filtered out
    "std_conv": st.booleans(),
    "std_conv_eps": st.sampled_from((1e-6, 1e-5, 1e-8)),
    "stride_block": st.sampled_from(STRIDE_BLOCKS),
    "output_stride": lambda d: st.just(32) if d["stride_block"] == "last" else st.sampled_from(OUTPUT_STRIDES),
    "stride_in_1x1": lambda d: st.booleans() if _bottleneck(d) else st.just(False),
    "anti_alias": lambda d: st.just(None) if d["preact"] or d["stride_in_1x1"] else st.sampled_from(ANTI_ALIASES),
    "replace_stem_pool": st.booleans(),  # combinations the spec refuses are filtered out
    "reduce_first": lambda d: st.just(1) if d["block_widths"] is not None else st.sampled_from((1, 2)),
    "down_kernel_size": st.sampled_from((1, 3)),
    "project_first": st.booleans(),
    "conv_bias": st.booleans(),
    "zero_init_residual": st.booleans(),
    "include_top": st.booleans(),
    "num_classes": lambda d: st.integers(1, 7) if d["include_top"] else st.integers(0, 7),
    "pooling": lambda d: st.just(None) if d["include_top"] else st.sampled_from(POOLINGS),
    "bn_eps": st.sampled_from((1e-5, 1.001e-5, 1e-3)),
    "bn_momentum": st.sampled_from((0.1, 0.01)) | st.floats(0.0, 1.0),
}

# Every combination, valid or not: the spec must refuse what it cannot build (independent draws, widths from 0).
RAW: dict[str, Choice] = {
    **VALID,
    "base_planes": st.integers(0, 16),
    "groups": st.integers(1, 4),
    "width_per_group": st.integers(1, 64) | st.just(64),
    "stem_width": st.integers(0, 12),
    "output_stride": st.sampled_from(OUTPUT_STRIDES),
    "stride_in_1x1": st.booleans(),
    "num_classes": st.integers(0, 7),
    "pooling": st.sampled_from(POOLINGS),
    "norm": st.sampled_from(NORMS),
    "norm_groups": st.integers(1, 8),
    "block_types": st.none() | st.lists(st.sampled_from((*BLOCKS, "plain")), max_size=4).map(tuple),
    "planes": st.none() | st.lists(st.integers(0, 16), max_size=4).map(tuple),
    "block_widths": st.none() | st.lists(st.lists(st.integers(0, 12), max_size=3).map(tuple), max_size=6).map(tuple),
    "eca_kernels": st.none() | st.lists(st.integers(0, 8), max_size=4).map(tuple),
}

SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ResNetSpec) if f.name not in NOT_SEARCHED)


@st.composite
def spec_fields(draw: Callable[[SearchStrategy], Any], table: Mapping[str, Choice] = VALID) -> dict[str, Any]:
    """A dict of spec fields drawn from ``table`` (fields the spec no longer has are skipped)."""
    drawn: dict[str, Any] = {}
    for name, choice in table.items():
        if name in SPEC_FIELDS:
            drawn[name] = draw(choice if isinstance(choice, SearchStrategy) else choice(drawn))
    return drawn


def _spec_or_none(fields: Mapping[str, Any]) -> ResNetSpec | None:
    try:
        return ResNetSpec(**fields, name="drawn")
    except SpecError:
        return None


def valid_specs(**narrower: Choice) -> SearchStrategy:
    """Valid specs over the whole option space (combinations refused by rules the table does not encode
    are filtered out); ``narrower`` replaces entries, e.g. shallower stages where a build is costly."""
    return spec_fields({**VALID, **narrower}).map(_spec_or_none).filter(lambda spec: spec is not None)


def odd_sizes(low: int = 9, high: int = 47) -> SearchStrategy:
    """(height, width), odd and different, as parity tests need."""
    side = st.integers(low // 2, high // 2).map(lambda n: 2 * n + 1)
    return st.tuples(side, side)


def ci_settings(max_examples: int, **overrides: Any) -> settings:
    """CI-sized and reproducible: derandomized (the same examples on every run), no example database,
    no deadline (a shared CI machine's timing is not a property). ``RESNET_CORE_HYPOTHESIS_EXAMPLES=N``
    runs a longer random search; record what it finds as ``@example`` cases."""
    options = {"derandomize": True, "database": None, "deadline": None, **overrides}
    if os.environ.get("RESNET_CORE_HYPOTHESIS_EXAMPLES"):  # a longer, random search: set to an example count
        max_examples, options["derandomize"] = int(os.environ["RESNET_CORE_HYPOTHESIS_EXAMPLES"]), False
    return settings(max_examples=max_examples, suppress_health_check=[HealthCheck.too_slow], **options)


def size_the_plan_supports(spec: ResNetSpec, height: int, width: int) -> bool:
    """False for inputs too small for anti-aliased downsampling: its 2x2 pool leaves an empty map from a
    1-pixel one (found by the size properties; to fix in the plan, then drop this)."""
    return spec.anti_alias is None or min(height, width) >= 33
