"""Hypothesis strategies over the ResNetSpec option space, and the settings every property test uses.

Adding a spec option is one entry in ``VALID`` (a ResNetSpec field -> strategy table; a sub-spec field
draws the sub-specs whole, e.g. a new block type is one more ``st.builds`` in ``_block_spec``); add one to
``RAW`` (0.1's flat names, the alias path) too when the option has values or combinations the spec must
refuse. An entry is a strategy, or a function of the fields drawn so far (entries are drawn in table
order) returning one, for options valid only with others. ``test_every_spec_field_has_a_strategy``
fails when a spec field has no entry, so a new option cannot be left out of the search unnoticed.

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

from resnet_core.errors import InputError
from resnet_core.plan import make_plan
from resnet_core.spec import (
    ANTI_ALIASES,
    ATTENTIONS,
    BLOCKS,
    DOWNSAMPLES,
    ECA,
    FIELD_NAMES,
    NORMS,
    OUTPUT_STRIDES,
    POOL_PADDINGS,
    POOLINGS,
    SE,
    STEMS,
    STRIDE_BLOCKS,
    Basic,
    BatchNorm,
    Bottleneck,
    Classifier,
    EvoNormS0,
    Features,
    FilterResponseNorm,
    Folded,
    GroupNorm,
    Res2Net,
    ResNeSt,
    ResNetSpec,
    Shortcut,
    SKBasic,
    SKBottleneck,
    SpecError,
    StdConv,
    Stem,
)

Choice = SearchStrategy | Callable[[Mapping[str, Any]], SearchStrategy]

# Fields a spec has but the search leaves alone (a label, not architecture).
NOT_SEARCHED = ("name",)

# The block types drawn here: torchvision's two, whose flat fields the strategies combine freely. The block types
# with their own operators (ResNeSt, Res2Net, SKNet) are drawn whole by their own strategies and tests.
TORCHVISION_BLOCKS = ("basic", "bottleneck")


def _kinds(drawn: Mapping[str, Any]) -> tuple[str, ...]:
    """Each stage's block type."""
    return drawn["_types"] or (drawn["_block"],) * len(drawn["layers"])


def _bottleneck(drawn: Mapping[str, Any]) -> bool:
    """Every stage is a bottleneck (groups and width_per_group are the bottleneck's)."""
    return set(_kinds(drawn)) == {"bottleneck"}


def _types(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None (one type), or a type per stage, stage 1's being ``_block``."""
    n = len(drawn["layers"]) - 1
    rest = st.lists(st.sampled_from(TORCHVISION_BLOCKS), min_size=n, max_size=n)
    return st.none() | rest.map(lambda types: (drawn["_block"], *types))


def _block_widths(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None, or every block's conv widths with one output width per stage (widths that norm groups divide)."""
    width = st.sampled_from((4, 8, 12))

    def stage(block: str, depth: int) -> SearchStrategy:
        inner = st.lists(width, min_size=2 if block == "bottleneck" else 1, max_size=2 if block == "bottleneck" else 1)
        return st.tuples(width, st.lists(inner, min_size=depth, max_size=depth)).map(
            lambda drawn_stage: tuple((*inner, drawn_stage[0]) for inner in drawn_stage[1]))

    stages = st.tuples(*(stage(b, n) for b, n in zip(_kinds(drawn), drawn["layers"], strict=True)))
    return st.none() | stages.map(lambda per_stage: tuple(w for blocks in per_stage for w in blocks))


def _planes(drawn: Mapping[str, Any]) -> SearchStrategy:
    """None, or a base width per stage from ``base_planes`` (explicit block widths replace them)."""
    if drawn["block_widths"] is not None:
        return st.none()
    rest = st.lists(st.integers(1, 12), min_size=len(drawn["layers"]) - 1, max_size=len(drawn["layers"]) - 1)
    return st.none() | rest.map(lambda planes: (drawn["base_planes"], *planes))


def _block_spec(drawn: Mapping[str, Any]) -> SearchStrategy:
    """Basic or Bottleneck (its groups, width per group and stride placement), one per stage when types vary."""
    if _bottleneck(drawn) and drawn["block_widths"] is None:
        smallest = -(-64 // drawn["base_planes"])  # planes * wpg >= 64 leaves stage 1 a channel
        bottleneck = st.builds(Bottleneck, st.sampled_from((1, 2, 3, 4)), st.integers(smallest, max(smallest, 32)),
                               st.booleans())
    else:
        bottleneck = st.just(Bottleneck())
    if drawn["_types"] is None:  # one type: sometimes one with its own operator, on the same widths
        if drawn["_block"] == "bottleneck":
            return bottleneck.flatmap(_with_own_operator) if drawn["block_widths"] is None else bottleneck
        return st.just(Basic()) | st.builds(SKBasic, split_input=st.booleans(), keep_3x3=st.booleans())
    return bottleneck.map(lambda b: tuple(b if kind == "bottleneck" else Basic() for kind in drawn["_types"]))


def _with_own_operator(b: Bottleneck) -> SearchStrategy:
    """The bottleneck drawn, or ResNeSt, Res2Net or SKNet on its groups and width per group (their spec refuses
    pre-activation, anti-aliasing and reduce_first, and widths their splits cannot divide: filtered out)."""
    g, w = b.groups, b.width_per_group
    return st.just(b) | st.builds(ResNeSt, st.just(g), st.just(w), st.just(False), st.sampled_from((1, 2)),
                                  st.booleans(), st.booleans()) \
        | st.builds(Res2Net, st.just(g), st.just(w), st.just(False), st.sampled_from((1, 2, 3))) \
        | st.builds(SKBottleneck, groups=st.just(g), width_per_group=st.just(w), split_input=st.booleans(),
                    keep_3x3=st.booleans())


def _stride_in_1x1(drawn: Mapping[str, Any]) -> bool:
    blocks = drawn["block_spec"] if isinstance(drawn["block_spec"], tuple) else (drawn["block_spec"],)
    return any(getattr(b, "stride_in_1x1", False) for b in blocks)


_EPS = st.sampled_from((1e-5, 1.001e-5, 1e-3))
_GROUPS = st.sampled_from((1, 2, 4))  # widths it does not divide are filtered out


def _norm_spec(drawn: Mapping[str, Any]) -> SearchStrategy:
    """Any norm; the fused ones (EvoNorm-S0, FRN) in pre-activation networks only, folded ones in
    post-activation networks only (with zero_init_residual, std_conv or a mixer block: filtered out)."""
    batch = st.builds(BatchNorm, _EPS, st.sampled_from((0.1, 0.01)) | st.floats(0.0, 1.0))
    norms = batch | st.builds(GroupNorm, _GROUPS, _EPS)
    fused = st.builds(EvoNormS0, _GROUPS, _EPS) | st.builds(FilterResponseNorm, _EPS)
    return norms | fused if drawn["preact"] else norms | st.just(Folded())


def _attention_spec(drawn: Mapping[str, Any]) -> SearchStrategy:
    n = len(drawn["layers"])
    kernels = st.none() | st.lists(st.sampled_from((1, 3, 5, 7)), min_size=n, max_size=n).map(tuple)
    ratio = st.sampled_from((1 / 16, 0.25, 1.0)) | st.floats(0.01, 1.0)
    return st.none() | st.builds(SE, ratio) | st.builds(ECA, kernels)


def _stem_spec(drawn: Mapping[str, Any]) -> SearchStrategy:
    """Any stem; a strided-conv stem pool ("conv") post-activation and without anti-aliasing (others filtered)."""
    kind = st.sampled_from(STEMS)
    return kind.flatmap(lambda k: st.builds(Stem, st.just(k), st.integers(4 if k == "deep_tiered" else 1, 12),
                                            st.sampled_from(("max", "conv", None)), st.sampled_from(POOL_PADDINGS)))


# Valid specs, one entry per ResNetSpec field (sub-specs drawn whole), and helpers ("_" names) the later
# entries read. Dependent entries read the entries above them.
VALID: dict[str, Choice] = {
    "layers": st.lists(st.integers(1, 2), min_size=1, max_size=4).map(tuple),
    "_block": st.sampled_from(TORCHVISION_BLOCKS),
    "_types": _types,
    "block_widths": _block_widths,
    "base_planes": lambda d: st.just(64) if d["block_widths"] is not None else st.integers(1, 12),
    "planes": _planes,
    "block_spec": _block_spec,
    "in_channels": st.integers(1, 4),
    "stem_spec": _stem_spec,
    "shortcut_spec": st.builds(Shortcut, st.sampled_from(DOWNSAMPLES), st.just(1), st.booleans())
    | st.builds(Shortcut, st.just("conv"), st.sampled_from((1, 3)), st.booleans()),
    "attention_spec": _attention_spec,
    "preact": st.booleans(),
    "norm_spec": _norm_spec,
    "std_conv_spec": st.none() | st.builds(StdConv, st.sampled_from((1e-6, 1e-5, 1e-8))),
    "stride_block": st.sampled_from(STRIDE_BLOCKS),
    "output_stride": lambda d: st.just(32) if d["stride_block"] == "last" else st.sampled_from(OUTPUT_STRIDES),
    "anti_alias": lambda d: st.just(None) if d["preact"] or _stride_in_1x1(d) else st.sampled_from(ANTI_ALIASES),
    "reduce_first": lambda d: st.just(1) if d["block_widths"] is not None else st.sampled_from((1, 2)),
    "conv_bias": st.booleans(),
    "zero_init_residual": st.booleans(),
    "head_spec": st.builds(Classifier, st.integers(1, 7)) | st.builds(Features, st.sampled_from(POOLINGS)),
    # training regularisers: no weights, no structure; a rate the spec refuses (no pooled head, one block) is
    # filtered out
    "drop_rate": st.sampled_from((0.0, 0.5)) | st.floats(0.0, 0.99),
    "drop_path_rate": st.sampled_from((0.0, 0.2)) | st.floats(0.0, 0.99),
}

# Every combination, valid or not, in resnet-core 0.1's flat names (the alias path): the spec must refuse
# what it cannot build (independent draws, widths from 0).
RAW: dict[str, Choice] = {
    "block": st.sampled_from(TORCHVISION_BLOCKS),
    "layers": st.lists(st.integers(1, 2), min_size=1, max_size=4).map(tuple),
    "base_planes": st.integers(0, 16),
    "groups": st.integers(1, 4),
    "width_per_group": st.integers(1, 64) | st.just(64),
    "in_channels": st.integers(1, 4),
    "stem": st.sampled_from(STEMS),
    "stem_width": st.integers(0, 12),
    "stem_pool": st.booleans(),
    "replace_stem_pool": st.booleans(),
    "stem_pool_padding": st.sampled_from(POOL_PADDINGS),
    "downsample": st.sampled_from(DOWNSAMPLES),
    "down_kernel_size": st.sampled_from((1, 3)),
    "project_first": st.booleans(),
    "attention": st.sampled_from(ATTENTIONS),
    "se_ratio": st.sampled_from((1 / 16, 0.25, 1.0)) | st.floats(0.01, 1.0),
    "preact": st.booleans(),
    "norm": st.sampled_from(NORMS),
    "norm_groups": st.integers(1, 8),
    "std_conv": st.booleans(),
    "std_conv_eps": st.sampled_from((1e-6, 1e-5, 1e-8)),
    "stride_block": st.sampled_from(STRIDE_BLOCKS),
    "output_stride": st.sampled_from(OUTPUT_STRIDES),
    "stride_in_1x1": st.booleans(),
    "anti_alias": st.sampled_from(ANTI_ALIASES),
    "reduce_first": st.sampled_from((1, 2)),
    "conv_bias": st.booleans(),
    "zero_init_residual": st.booleans(),
    "include_top": st.booleans(),
    "num_classes": st.integers(0, 7),
    "pooling": st.sampled_from(POOLINGS),
    "bn_eps": st.sampled_from((1e-5, 1.001e-5, 1e-3)),
    "bn_momentum": st.sampled_from((0.1, 0.01)) | st.floats(0.0, 1.0),
    "block_types": st.none() | st.lists(st.sampled_from((*BLOCKS, "plain")), max_size=4).map(tuple),
    "planes": st.none() | st.lists(st.integers(0, 16), max_size=4).map(tuple),
    "block_widths": st.none() | st.lists(st.lists(st.integers(0, 12), max_size=3).map(tuple), max_size=6).map(tuple),
    "eca_kernels": st.none() | st.lists(st.integers(0, 8), max_size=4).map(tuple),
    "drop_rate": st.sampled_from((0.0, 0.3, 1.0, -0.1)),
    "drop_path_rate": st.sampled_from((0.0, 0.1, 1.0)),
}

SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ResNetSpec) if f.name not in NOT_SEARCHED)


@st.composite
def spec_fields(draw: Callable[[SearchStrategy], Any], table: Mapping[str, Choice] = VALID) -> dict[str, Any]:
    """A dict of spec fields (or flat names) drawn from ``table``; helper entries ("_" names) are drawn for
    later entries to read, and names the spec no longer takes are skipped."""
    drawn: dict[str, Any] = {}
    for name, choice in table.items():
        if name.startswith("_") or name in FIELD_NAMES:
            drawn[name] = draw(choice if isinstance(choice, SearchStrategy) else choice(drawn))
    return {k: v for k, v in drawn.items() if not k.startswith("_")}


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
    """False for inputs too small for anti-aliased downsampling (its 2x2 pool leaves an empty map from a
    1-pixel one; found by the size properties; to fix in the plan, then drop this), and for the sizes the plan
    refuses as timm does: an anti-aliased main path (floor) and its pooled shortcut (ceil) of different sizes."""
    if spec.anti_alias is None:
        return True
    if min(height, width) < 33:
        return False
    try:
        make_plan(spec).output_size(height, width)
    except InputError as exc:
        return "the reference implementation fails the same way" not in str(exc)
    return True
