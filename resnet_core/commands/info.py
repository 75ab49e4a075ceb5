"""``resnet-core info``: what a weights file holds and which architecture it is."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info", help="show a weights file's spec, tensor count, dtype, size and source",
        description="Describe a weights file: its format and writer, the spec (stored, given or inferred), tensor "
                    "count, dtypes and sizes. The tensors are checked against the spec; none is loaded.",
        epilog="examples:\n  resnet-core info model.safetensors\n  resnet-core info resnet50.pth --arch resnet50 "
               "--json", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="weights file (.safetensors, .pth/.pt, .weights.h5, .keras), model folder, "
                                "hf-hub:ORG/NAME[@REV], torchvision:NAME.TAG or local-dir:PATH")
    p.add_argument("--arch", metavar="NAME|SPEC.json", help="check the file against this architecture")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def run(args: argparse.Namespace) -> int:
    from ..sources import describe

    info = describe(args.file, spec=args.arch)
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    rows = [("file", info["file"]), ("format", f"{info['format']}, written by {info['producer']}")]
    if info["spec"] is None:
        rows.append(("spec", f"unknown: {info['spec_error']}"))
    else:
        spec = info["spec"]
        rows.append(("spec", f"{spec['name']} ({info['note']})"))
        rows.append(("", json.dumps({k: v for k, v in spec.items() if k != "name"}, sort_keys=True)))
        rows.append(("params", f"{info['parameters']:,}"))
    record = info.get("weights_info")
    if record:
        names = record.pop("class_names", None)
        rows.append(("trained", json.dumps(record, sort_keys=True)))
        if names:
            rows.append(("classes", f"{len(names)}: {', '.join(names[:5])}" + (", ..." if len(names) > 5 else "")))
    rows += [("tensors", f"{info['tensors']:,}"), ("dtype", ", ".join(info["dtypes"]) or "-"),
             ("size", f"{_mb(info['tensor_bytes'])} of tensors, {_mb(info['file_bytes'])} on disk")]
    for key, value in rows:
        print(f"{key + ':' if key else '':<9}{value}")
    return 0
