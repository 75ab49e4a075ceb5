"""``resnet-core summary``: the paper's Table 1 for any spec, without importing a framework."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="the paper's Table 1 for a spec: stage sizes, block shapes, parameters, MACs",
        description="Per stage: output size, block shape, parameters and multiply-accumulates (convolutions and the "
                    "linear layer, torchvision's GFLOPS convention), computed from the plan alone.",
        epilog="examples:\n  resnet-core summary resnet50\n  resnet-core summary resnext50_32x4d --size 65x77 "
               "--json\n  resnet-core summary resnet50d --svg resnet50d.svg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC",
                   help="a preset name (see `resnet-core list`), a spec .json, a weights file, a model folder or a "
                        "hub name (a bare name is a preset; write a path as ./NAME)")
    p.add_argument("--size", default="224", metavar="N|HxW", help="input image size (default 224)")
    p.add_argument("--input-size", dest="size", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--json", action="store_true", help="print one JSON object (params, macs, stages, input_size)")
    p.add_argument("--svg", metavar="OUT.svg", help="also draw the network's stages and block types to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..table1 import summary

    table = summary(args.spec, args.size)
    if args.svg:
        from ..diagram import write_svg

        write_svg(table.spec, args.svg)
    print(table.to_json() if args.json else table.format())
    return 0
