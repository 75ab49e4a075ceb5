"""``resnet-core summary``: the paper's Table 1 for any spec, without importing a framework."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="the paper's Table 1 for a spec: stage sizes, block shapes, parameters, MACs",
        description="Per stage: output size, block shape, parameters and multiply-accumulates (convolutions and the "
                    "linear layer, torchvision's GFLOPS convention), computed from the plan alone.",
        epilog="examples:\n  resnet-core summary resnet50\n  resnet-core summary resnext50_32x4d --input-size 65x77 "
               "--json\n  resnet-core summary resnet50d --svg resnet50d.svg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC",
                   help="a preset name (see `resnet-core list`), a spec .json or a weights file")
    p.add_argument("--input-size", default="224", metavar="N|HxW", help="input image size (default 224)")
    p.add_argument("--json", action="store_true", help="print one JSON object (params, macs, stages, input_size)")
    p.add_argument("--svg", metavar="OUT.svg", help="also draw the network's stages and block types to this file")
    p.set_defaults(func=run)


def resolve(value: str):
    """A spec from a preset name, a spec JSON file, or the spec of a weights file."""
    import os

    from ..io.api import open_weights, resolve_spec

    if os.path.exists(value) and not value.lower().endswith(".json"):
        with open_weights(value) as opened:
            return opened.spec
    return resolve_spec(value)


def run(args: argparse.Namespace) -> int:
    from ..table1 import summary

    table = summary(resolve(args.spec), args.input_size)
    if args.svg:
        from ..diagram import write_svg

        write_svg(table.spec, args.svg)
    print(table.to_json() if args.json else table.format())
    return 0
