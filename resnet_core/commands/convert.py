"""``resnet-core convert``: any weights format to any other, bit for bit, written atomically."""

from __future__ import annotations

import argparse
import sys

from ..io.formats import FORMATS

EPILOG = """\
formats (by extension):
{formats}

examples:
  resnet-core convert resnet50.pth resnet50.weights.h5 --arch resnet50
  resnet-core convert resnet50.weights.h5 resnet50.safetensors     # spec read back from the file
  resnet-core convert model.safetensors model.keras                # a whole Keras model
  resnet-core convert model.pth model.safetensors --dtype bfloat16
  resnet-core convert hf-hub:timm/resnet50.a1_in1k resnet50.keras  # pretrained weights by name
  resnet-core convert torchvision:resnet50.IMAGENET1K_V2 resnet50.weights.h5
"""


def _formats() -> str:
    return "\n".join(f"  {', '.join(f.extensions):<16} {f.description}" for f in FORMATS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert weights between .safetensors, .pth/.pt, .weights.h5 and .keras",
        description="Convert a weights file to another format, tensor by tensor and bit for bit. The input is "
                    "checked against its spec before anything is written; the output appears only when complete "
                    "and never replaces an existing file without --force.",
        epilog=EPILOG.format(formats=_formats()), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="input weights file, model folder, hf-hub:ORG/NAME[@REV] or "
                                  "torchvision:NAME.TAG")
    p.add_argument("target", help="output weights file; its extension picks the format")
    p.add_argument("--arch", metavar="NAME|SPEC.json",
                   help="the architecture: a preset (see `resnet-core list`) or a spec JSON file. Default: the spec "
                        "stored in the input, else inferred from its tensors")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="cast every tensor (default: keep each tensor's dtype)")
    p.add_argument("--fold-norms", action="store_true",
                   help="fold the batch norms into the convs (rc.fold_norms): an inference-only network, spec "
                        "norm='folded', equal to the input in eval mode")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.progress import Progress
    from ..sources import convert

    bars: list[Progress] = []

    def progress(total: int, count: int):
        bar = Progress(total, f"{args.source} -> {args.target}", enabled=False if args.quiet else None)
        bars.append(bar)
        return bar.update

    if args.fold_norms:  # the whole input is read, folded, then written: no tensor-by-tensor streaming
        from ..fold import fold_file

        result = fold_file(args.source, args.target, spec=args.arch, dtype=args.dtype, overwrite=args.force)
        if not args.quiet:
            print(f"wrote {result.target}: {result.spec.name}, {result.count} tensors, {'/'.join(result.dtypes)}, "
                  f"{result.nbytes / 1e6:,.1f} MB ({result.note})")
        return 0
    try:
        result = convert(args.source, args.target, spec=args.arch, dtype=args.dtype, overwrite=args.force,
                         progress=progress)
    finally:
        for bar in bars:
            bar.close()
    if result.note.startswith("inferred"):
        print(f"resnet-core convert: {result.note}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {result.target}: {result.spec.name}, {result.count} tensors, {'/'.join(result.dtypes)}, "
              f"{result.nbytes / 1e6:,.1f} MB ({result.note})")
    return 0
