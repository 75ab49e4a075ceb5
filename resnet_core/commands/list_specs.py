"""``resnet-core list``: the presets, with parameter counts."""

from __future__ import annotations

import argparse

from ..plan import make_plan
from ..presets import get_spec, list_specs
from ..spec import ResNetSpec
from ..weights_info import preset_info

# Structural options shown when a preset departs from torchvision's defaults.
_VARIANT_FIELDS = ("preact", "stride_block", "stride_in_1x1", "conv_bias", "stem", "downsample", "attention",
                   "anti_alias", "replace_stem_pool", "reduce_first", "down_kernel_size", "project_first",
                   "output_stride", "stem_pool_padding", "norm", "norm_groups", "std_conv", "std_conv_eps",
                   "planes", "eca_kernels")


def variant(spec: ResNetSpec) -> str:
    """The structural departures from torchvision's defaults, then the input normalisation the preset's
    usual weights expect when it is not torchvision's (from the trained-with record, not the spec)."""
    default = ResNetSpec()
    parts = [f"{f}={getattr(spec, f)}" if not isinstance(getattr(spec, f), bool) else f
             for f in _VARIANT_FIELDS if getattr(spec, f) != getattr(default, f)]
    if spec.block_widths is not None:  # too long to print: a pruned network's widths, one triple per block
        parts.append("block_widths (per block)")
    mode = preset_info(spec.name).preprocessing
    return ", ".join(parts + ([f"preprocessing={mode}"] if mode != "torch" else []))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the presets with their parameter counts",
                       description="List the registered presets.", epilog="Example: resnet-core list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in list_specs():
        spec = get_spec(name)
        layers = "-".join(str(d) for d in spec.layers)
        block = "/".join(spec.block_types) if spec.block_types else spec.block
        rows.append((name, block, layers, f"{spec.groups}x{spec.width_per_group}",
                     f"{make_plan(spec).num_params:,}", variant(spec)))
    header = ("name", "block", "layers", "groups x width", "params", "variant")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())
    return 0
