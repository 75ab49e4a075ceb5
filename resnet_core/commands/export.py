"""``resnet-core export``: a weights file or preset to ONNX, torch.export, a SavedModel or LiteRT."""

from __future__ import annotations

import argparse

EPILOG = """\
formats (by extension, or --format):
{formats}

examples:
  resnet-core export resnet50.safetensors resnet50.onnx
  resnet-core export resnet50.safetensors resnet50.onnx --from keras
  resnet-core export resnet50.safetensors resnet50.pt2
  resnet-core export resnet50.safetensors resnet50_savedmodel --format saved_model
  resnet-core export resnet50.safetensors resnet50.tflite
  resnet-core export resnet50.safetensors resnet50.int8.onnx --quantize int8 --calibration images.npy
"""


def _formats() -> str:
    from ..export import FORMATS

    return "\n".join(f"  {', '.join(f.extensions) or '(folder)':<10} {f.name:<12} {f.description}" for f in FORMATS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export to ONNX, torch.export (.pt2), a TensorFlow SavedModel or LiteRT (.tflite)",
        description="Write a deployable artifact from our torch or Keras model, with a dynamic batch axis and the "
                    "input layout and preprocessing in its metadata. The output appears only when complete and "
                    "never replaces an existing one without --force.",
        epilog=EPILOG.format(formats=_formats()), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SRC", help="a weights file (any format `convert` reads, or canonical .npz), "
                                                 "a model folder, a hub name, or a preset name (random weights)")
    p.add_argument("target", metavar="OUT", help="output file, or folder for --format saved_model")
    p.add_argument("--format", help="onnx, pt2, saved_model or tflite (default: from OUT's extension)")
    p.add_argument("--from", dest="origin", choices=("torch", "keras"),
                   help="the model the artifact is written from (default: torch for .onnx/.pt2, keras for "
                        "SavedModel/.tflite)")
    p.add_argument("--arch", metavar="NAME|SPEC.json", help="the architecture of SRC, when not stored or inferable")
    p.add_argument("--size", help="input height and width, N or HxW (default: 224, or the calibration images')")
    p.add_argument("--opset", type=int, help="ONNX opset (default: 18, torch.onnx's dynamo exporter's)")
    p.add_argument("--quantize", choices=("int8",), help="int8 through ONNX Runtime static quantisation (.onnx)")
    p.add_argument("--calibration", metavar="IMAGES.npy",
                   help="calibration images for --quantize: float32 NCHW, preprocessed as the model expects")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import DEFAULT_OPSET, export
    from .parity import parse_size

    result = export(args.source, args.target, format=args.format, origin=args.origin,
                    size=parse_size(args.size) if args.size else None,
                    opset=args.opset if args.opset is not None else DEFAULT_OPSET, quantize=args.quantize,
                    calibration=args.calibration, spec=args.arch, overwrite=args.force)
    if not args.quiet:
        details = [f"from the {result.origin} model", f"{result.size[0]}x{result.size[1]}, batch dynamic",
                   f"input {result.metadata['input_layout']}"]
        if result.opset is not None:
            details.append(f"opset {result.opset}")
        if result.quantize:
            details.append(result.quantize)
        print(f"wrote {result.path}: {result.format}, {result.spec} ({result.source}), {', '.join(details)}, "
              f"{result.seconds:.1f} s")
    return 0
