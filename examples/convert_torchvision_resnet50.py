"""Convert a torchvision ResNet-50 to Keras 3 and prove it on every Keras engine.

1. A torchvision ``resnet50`` with non-trivial weights is saved as ``OUT/resnet50.pth``.
2. That checkpoint becomes ``OUT/resnet50.weights.h5``: our Keras model, weights set from the
   state_dict (torchvision's names are the canonical ones), saved by Keras itself.
3. On each Keras engine (JAX, TensorFlow, torch), in its own process, a fresh Keras model loads
   ``resnet50.weights.h5`` and runs the images; its logits are compared with torchvision's own,
   computed here. Exit status 1 if any engine is off by more than 1e-5 relative, or did not run.

    pip install torch==2.14.1 torchvision==0.29.1 -e ".[all]"
    python examples/convert_torchvision_resnet50.py --out ./out
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision

import resnet_core as rc
from resnet_core.parity import run_engines
from resnet_core.parity.report import format_rows, topk_agreement
from resnet_core.testing import random_images, random_weights, relative_error

TOLERANCE = 1e-5
SIZES = ((224, 224), (65, 77))
KERAS_ENGINES = ("keras-jax", "keras-tensorflow", "keras-torch")


def make_checkpoint(out: Path) -> torchvision.models.ResNet:
    """torchvision's resnet50 with every tensor set away from its initial value, saved as a .pth."""
    model = torchvision.models.resnet50()
    state = model.state_dict()
    for name, value in random_weights("resnet50").items():
        state[name] = torch.from_numpy(value)
    model.load_state_dict(state)  # num_batches_tracked keeps torchvision's own value
    torch.save(model.state_dict(), out / "resnet50.pth")
    return model.eval()


def canonical_from_pth(path: Path) -> dict[str, np.ndarray]:
    """The canonical tensors of a torchvision checkpoint: the same names, minus BN's step counters."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    plan = rc.make_plan(rc.get_spec("resnet50"))
    extra = sorted(k for k in state if k not in plan.param_index)
    if any(not k.endswith("num_batches_tracked") for k in extra):
        raise ValueError(f"{path} has tensors a resnet50 does not: {extra}")
    return {name: state[name].float().numpy() for name in plan.param_index}


def convert(out: Path, work: Path, engine: str) -> Path:
    """``resnet50.pth`` -> ``resnet50.weights.h5``, written by Keras on ``engine``."""
    np.savez(work / "canonical.npz", **canonical_from_pth(out / "resnet50.pth"))
    target = out / "resnet50.weights.h5"
    job = {"spec": rc.get_spec("resnet50").to_dict(), "weights": {"format": "npz", "path": str(work / "canonical.npz")},
           "save_keras_weights": str(target)}
    run = run_engines([engine], job, work / "convert")[engine]
    if not run.ok:
        raise RuntimeError(f"Conversion on {engine} {run.status}: {run.reason}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out", help="output folder (default: ./out)")
    parser.add_argument("--engines", default=",".join(KERAS_ENGINES), help="Keras engines to check")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in KERAS_ENGINES]
    if unknown or not engines:
        parser.error(f"--engines: expected some of {', '.join(KERAS_ENGINES)}; got {args.engines!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    model = make_checkpoint(out)
    print(f"wrote {out / 'resnet50.pth'} (torchvision {torchvision.__version__}, torch {torch.__version__})")
    images = {f"{h}x{w}": random_images(args.batch, h, w, seed=i) for i, (h, w) in enumerate(SIZES)}
    with torch.no_grad():
        expected = {key: model(torch.from_numpy(x)).numpy() for key, x in images.items()}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        target = convert(out, work, engines[0])
        print(f"wrote {target} (Keras, on {engines[0]})")
        np.savez(work / "inputs.npz", **{f"images/{key}": x for key, x in images.items()})
        job = {"spec": rc.get_spec("resnet50").to_dict(), "weights": {"format": "keras", "path": str(target)},
               "inputs": str(work / "inputs.npz"), "mode": "eval", "dtype": "float32"}
        runs = run_engines(engines, job, work / "check", jobs=1)
        rows = [["engine", "size", "max abs", "max rel", "top-1", "result"]]
        failed = False
        for engine, run in runs.items():
            if not run.ok:
                rows.append([engine, "-", "-", "-", "-", f"{run.status.upper()}: {run.reason}"])
                failed = True
                continue
            outputs = run.load()
            for key, ref in expected.items():
                logits = outputs[f"{key}/tap/logits"]
                abs_err = float(np.abs(logits - ref).max())
                rel_err = relative_error(logits, ref)
                ok = rel_err <= TOLERANCE
                failed |= not ok
                rows.append([engine, key, f"{abs_err:.2e}", f"{rel_err:.2e}", f"{topk_agreement(logits, ref, 1):.0%}",
                             "pass" if ok else f"FAIL (> {TOLERANCE:.0e})"])
    print(f"\nKeras logits vs torchvision's, batch {args.batch}, pass at {TOLERANCE:.0e} relative:")
    print("\n".join(format_rows(rows, left=2)))
    print("\nall engines pass" if not failed else "\nFAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
