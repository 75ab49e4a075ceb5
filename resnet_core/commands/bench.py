"""``resnet-core bench``: time a model on every installed engine x precision here, with fidelity, and recommend one.

Exit status: 0 when a variant meets the fidelity bound, 1 when none does (or the reference failed), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from ..bench import DEFAULT_TOP1, DTYPES, ENGINES, bench
from .report_files import check_report_files, print_report

EPILOG = """examples:
  resnet-core bench resnet50
  resnet-core bench r50.safetensors --engines torch,onnxruntime --dtypes float32,int8 --batch 1,8
  resnet-core bench torchvision:resnet50.IMAGENET1K_V2 --images val.npy --json bench.json --plot bench.png
  resnet-core bench tiny_resnext --size 32 --batch 1,4 --threads 2
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="time a model on every installed engine and precision here, and recommend the fastest "
                      "faithful one",
        description="Measure latency (median, min, max) and fidelity (max relative error, top-1 agreement against "
                    "our float32 torch model) of every installed engine x precision on this machine, each engine in "
                    "its own process, and recommend the fastest within the fidelity bound.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="SRC", help="a preset name, a weights file, a model folder, hf-hub:ORG/NAME or "
                                                "torchvision:NAME.TAG")
    p.add_argument("--arch", metavar="NAME|SPEC.json",
                   help="the architecture of a weights file, when it stores none and cannot be inferred")
    p.add_argument("--spec", dest="arch", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # parity's old spelling
    p.add_argument("--engines", help=f"comma-separated (default: every installed one of {', '.join(ENGINES)})")
    p.add_argument("--backends", dest="engines", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # parity's name
    p.add_argument("--dtypes", help=f"comma-separated (default: all of {', '.join(DTYPES)} each engine runs)")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    p.add_argument("--size", help="input size, N or HxW (default: 224, or the --images' size)")
    p.add_argument("--threads", type=int, help="threads per engine (default: each runtime's own)")
    p.add_argument("--images", metavar="X.npy",
                   help="preprocessed NCHW images for the fidelity columns (and int8 calibration); default random")
    p.add_argument("--min-top1", type=float, default=DEFAULT_TOP1,
                   help=f"the fidelity bound of the recommendation: top-1 agreement (default: {DEFAULT_TOP1})")
    p.add_argument("--max-rel-err", type=float, help="also bound the max relative error of the logits")
    p.add_argument("--budget", type=float, default=1.0, help="seconds of calls per row after 5 (default: 1)")
    p.add_argument("--timeout", type=float, help="seconds each engine's process may take")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of latency against error (needs matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .parity import parse_size

    check_report_files(args)

    def progress(text: str) -> None:
        print(f"resnet-core bench: {text}", file=sys.stderr, flush=True)

    report = bench(args.model, engines=args.engines, dtypes=args.dtypes, batch=args.batch,
                   size=parse_size(args.size) if args.size else None, threads=args.threads, images=args.images,
                   min_top1=args.min_top1, max_rel_err=args.max_rel_err, spec=args.arch, budget=args.budget,
                   timeout=args.timeout, progress=None if args.quiet else progress)
    print_report(report, args)
    return 0 if report.recommended else 1
