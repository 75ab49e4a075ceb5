"""Build time with weights: ``rc.build("resnet50", backend="keras", weights=FILE)`` + its first call
against ``keras.applications.ResNet50(weights=None)`` + its first call, on each Keras engine.

Each measurement runs in a fresh process (a build's cost is mostly one-time: initializer compilation
on JAX, graph tracing), the two sides alternate, and each side's median is reported with its min-max
spread. The clock starts after ``import keras`` (both sides pay it alike) and includes reading the
weights file for ours. Targets: ours / anchor <= 0.6 on JAX, <= 1.0 on TensorFlow and torch;
exits 1 on a miss.

The anchor is ResNet v1 (stride on the first 1x1 conv); resnet50 is v1.5 (stride on the 3x3), whose
first call costs more (larger activations into the strided convs). A second row, not a target, builds
``keras_resnet50``, the anchor's own architecture, so the cost of building is seen apart from that.

Both sides run as installed: resnet-core's modules are byte-compiled first, as pip does at install
(Keras's are), so a source checkout run with PYTHONDONTWRITEBYTECODE does not recompile some fifty
modules inside the clock. One untimed run of each side per engine first warms the file cache.

    python benchmarks/build_speed.py [--repeats 5] [--engines jax,tensorflow,torch]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = {"jax": 0.6, "tensorflow": 1.0, "torch": 1.0}
ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import numpy as np
import keras
x = np.zeros((1, 224, 224, 3), "float32")
start = time.perf_counter()
if sys.argv[1] != "anchor":
    import resnet_core as rc
    model = rc.build(sys.argv[1], backend="keras", weights=sys.argv[2])
else:
    model = keras.applications.ResNet50(weights=None)
keras.ops.convert_to_numpy(model(x))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


SIDES = ("resnet50", "keras_resnet50", "anchor")  # the first is the target's; the second for information


def _run(engine: str, side: str, weights: dict[str, str]) -> float:
    env = {**os.environ, "KERAS_BACKEND": engine, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", _CHILD, side, weights.get(side, "")], env=env, cwd=ROOT,
                          capture_output=True,
                          text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{engine}/{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def _weights_files(folder: str) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    import resnet_core as rc
    from resnet_core.testing import random_weights

    paths = {}
    for preset in SIDES[:2]:
        paths[preset] = os.path.join(folder, f"{preset}.safetensors")
        rc.write_weights(paths[preset], random_weights(preset), preset)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", default="jax,tensorflow,torch")
    args = parser.parse_args()
    for package in ("resnet_core", "backends"):
        compileall.compile_dir(ROOT / package, quiet=1)
    missed = []
    with tempfile.TemporaryDirectory() as folder:
        weights = _weights_files(folder)
        print(f"{'engine':<11} {'model':<15} {'ours s (min-max)':>22} {'anchor s (min-max)':>22} {'ratio':>6} "
              f"{'target':>7}")
        for engine in args.engines.split(","):
            times: dict[str, list[float]] = {side: [] for side in SIDES}
            for side in SIDES:  # warm-up, untimed
                _run(engine, side, weights)
            for _ in range(args.repeats):
                for side in SIDES:
                    times[side].append(_run(engine, side, weights))
            anchor = statistics.median(times["anchor"])
            spread = {s: f"{statistics.median(t):6.2f} ({min(t):.2f}-{max(t):.2f})" for s, t in times.items()}
            for side in SIDES[:2]:
                ratio = statistics.median(times[side]) / anchor
                if side == SIDES[0]:
                    ok = ratio <= TARGETS[engine]
                    target = f"{'<=' if ok else '> '}{TARGETS[engine]:4.1f}"
                    if not ok:
                        missed.append(engine)
                else:
                    target = "(info)"
                print(f"{engine:<11} {side:<15} {spread[side]:>22} {spread['anchor']:>22} {ratio:6.3f} {target:>7}",
                      flush=True)
    if missed:
        print(f"target missed on: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
