"""Convert a torchvision ResNet-50 checkpoint to Keras 3 and prove it on every Keras engine, as a user would.

1. A torchvision ``resnet50`` with non-trivial weights (random, with perturbed BatchNorm statistics) is saved
   as ``OUT/resnet50.pth``: the checkpoint a user brings.
2. resnet-core's torch model loads it (``rc.read_weights`` + ``rc.set_weights``) and is checked against
   torchvision's own forward pass: bit-identical.
3. ``resnet-core convert resnet50.pth resnet50.weights.h5 --arch resnet50`` writes the Keras weights.
4. ``resnet-core parity`` runs the ``.pth`` on torch and the ``.weights.h5`` on Keras over JAX, TensorFlow and
   torch (each engine in its own process, progress on stderr), layer by layer, at 224x224 and at an odd 65x77.

Exit status 0 when every engine is within 1e-5 relative on every layer, 1 otherwise.

    pip install torch==2.14.1 torchvision==0.29.1 -e ".[all]"
    python examples/convert_torchvision_resnet50.py --out ./out
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

import resnet_core as rc
from resnet_core.testing import random_images, random_weights

KERAS_ENGINES = ("keras-jax", "keras-tensorflow", "keras-torch")
SIZES = ("224", "65x77")


def make_checkpoint(path: Path) -> torchvision.models.ResNet:
    """torchvision's resnet50 with every tensor set away from its initial value, saved as a .pth."""
    model = torchvision.models.resnet50()
    state = model.state_dict()
    for name, value in random_weights("resnet50").items():
        state[name] = torch.from_numpy(value)
    model.load_state_dict(state)  # num_batches_tracked keeps torchvision's own value
    torch.save(model.state_dict(), path)
    return model.eval()


def check_torch_model(checkpoint: Path, torchvision_model: torch.nn.Module) -> float:
    """Largest |difference| between resnet-core's torch model holding the checkpoint and torchvision's."""
    spec, weights = rc.read_weights(checkpoint, spec="resnet50")
    ours = rc.build(spec, backend="torch").eval()
    rc.set_weights(ours, weights)
    x = torch.from_numpy(random_images(2, 224, 224, seed=0))
    with torch.no_grad():
        return float((ours(x) - torchvision_model(x)).abs().max())


def resnet_core(*args: str) -> int:
    """Run ``resnet-core ARGS`` as a user would (this interpreter's install), echoing the command line."""
    print(f"\n$ resnet-core {shlex.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "resnet_core.cli", *args]).returncode


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

    checkpoint, converted = out / "resnet50.pth", out / "resnet50.weights.h5"
    model = make_checkpoint(checkpoint)
    print(f"wrote {checkpoint} (torchvision {torchvision.__version__}, torch {torch.__version__})")
    diff = check_torch_model(checkpoint, model)
    print(f"resnet-core's torch model with {checkpoint.name} vs torchvision's: max |diff| {diff:.1e}"
          + (" (bit-identical)" if diff == 0 else ""))

    status = resnet_core("convert", str(checkpoint), str(converted), "--arch", "resnet50", "--force")
    engine_weights = [arg for e in engines for arg in ("--engine-weights", f"{e}={converted}")]
    for size in SIZES:
        if status:
            break
        status = resnet_core("parity", "resnet50", "--weights", str(checkpoint), *engine_weights,
                             "--backends", ",".join(["torch", *engines]), "--size", size,
                             "--batch", str(args.batch))
    failed = status != 0 or diff != 0
    print("\nall engines pass" if not failed else "\nFAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
