"""``resnet-core parity``: one model on several engines, compared layer by layer against torch.

Exit status: 0 within tolerance, 1 over tolerance (or an engine crashed, or nothing to compare),
2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from ..errors import InputError
from ..parity import DTYPES, ENGINES, MODES, parity
from ..parity.engines import ARTIFACT_ENGINES
from ..parity.engines import log as engines_log
from .report_files import check_report_files, print_report

EPILOG = """examples:
  resnet-core parity resnet50 --backends torch,keras-jax,keras-tensorflow,keras-torch
  resnet-core parity my.safetensors --mode train --grad --json report.json --plot report.png
  resnet-core parity tiny_resnext --dtype bfloat16 --size 65x77
  resnet-core parity hf-hub:timm/resnet18.a1_in1k --backends torch,keras-jax
  resnet-core parity r18.safetensors --backends torch,onnxruntime,litert,tf-saved-model,torch-export
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parity", help="compare a model across torch and the Keras engines, layer by layer",
        description="Run one model on several engines (each in its own process) with the same weights and "
                    "inputs, and compare the output of the stem, every block, the pooling and the logits "
                    "(and, on request, running statistics and gradients) against the reference engine.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="SPEC_OR_WEIGHTS",
                   help="a preset name (see 'resnet-core list'), a weights file (.npz, or any format "
                        "resnet_core.read_weights reads), a model folder, hf-hub:ORG/NAME or torchvision:NAME.TAG; "
                        "a file's spec is the one it stores, else inferred, unless --arch is given. A bare name is a "
                        "preset; write a path as ./NAME")
    p.add_argument("--arch", metavar="NAME|SPEC.json",
                   help="the architecture of a weights file: a preset or a spec JSON file (default: the spec stored "
                        "in the file, else inferred from its tensors)")
    p.add_argument("--spec", dest="arch", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--weights", help="weights file for a preset (default: non-trivial random weights)")
    p.add_argument("--backends", default=",".join(ENGINES),
                   help=f"comma-separated engines (default: {', '.join(ENGINES)}); exported artifacts, compared on "
                        f"their output: {', '.join(ARTIFACT_ENGINES)}")
    p.add_argument("--engines", dest="backends", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # bench's name
    p.add_argument("--reference", default="torch", help="engine the others are compared with (default: torch)")
    p.add_argument("--mode", choices=MODES, default="eval",
                   help="eval: running statistics; train: batch statistics, and running statistics after one step")
    p.add_argument("--grad", action="store_true", help="also compare the gradient of every weight")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="float32, or mixed precision in bfloat16 / float16 (default: float32)")
    p.add_argument("--batch", type=int, default=2, help="images per batch (default: 2)")
    p.add_argument("--size", default="224", help="input size, N or HxW (default: 224)")
    p.add_argument("--seed", type=int, default=0, help="seed of the images, probe and random weights")
    p.add_argument("--tolerance", type=float, help="one relative tolerance for everything (default: per dtype)")
    p.add_argument("--engine-weights", action="append", default=[], metavar="ENGINE=FILE",
                   help="give one engine other weights, e.g. keras-jax=converted.weights.h5, or an artifact engine "
                        "the artifact to check, e.g. onnxruntime=model.onnx (repeatable)")
    p.add_argument("--device", choices=("auto", "cpu"), default="auto",
                   help="auto: each engine's default device; cpu: hide GPUs from every engine")
    p.add_argument("--jobs", type=int, help="engines run at once (default: one per CPU core)")
    p.add_argument("--timeout", type=float, help="seconds each engine may take")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the error per layer (needs matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr while engines run")
    p.set_defaults(func=run)


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise InputError(f"--size expects N or HxW with positive integers. Received: {text!r}")
    return values[0], values[1]


def _engine_weights(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        engine, sep, path = item.partition("=")
        if not sep or not engine or not path:
            raise InputError(f"--engine-weights expects ENGINE=FILE. Received: {item!r}")
        out[engine.strip()] = path
    return out


@contextlib.contextmanager
def _progress_lines(enabled: bool) -> Iterator[None]:
    """Each engine's start and end as a line on stderr (the engines log them), so a long run is not silent."""
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("resnet-core parity: %(message)s"))
    logger = logging.getLogger(engines_log.name)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run(args: argparse.Namespace) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be at least 1. Received: {args.jobs}")
    if args.weights and args.arch:
        raise InputError("--arch names the architecture of a weights file given as SPEC_OR_WEIGHTS; with --weights, "
                         "give the architecture as SPEC_OR_WEIGHTS")
    check_report_files(args)
    spec, weights = args.model, args.weights
    if args.arch:
        spec, weights = args.arch, args.model
    with _progress_lines(enabled=not args.quiet):
        report = parity(
            spec, backends=args.backends, weights=weights, batch=args.batch, size=parse_size(args.size),
            mode=args.mode, grad=args.grad, dtype=args.dtype, seed=args.seed, reference=args.reference,
            tolerance=args.tolerance, device=args.device, jobs=args.jobs, timeout=args.timeout,
            engine_weights=_engine_weights(args.engine_weights),
        )
    print_report(report, args)
    return 0 if report.ok else 1
