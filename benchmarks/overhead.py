"""Our models against the anchors they replace, side by side in one process per engine.

torch: our resnet50 vs torchvision's resnet50 (same architecture, v1.5).
Keras: our keras_resnet50 (v1: stride on the 1x1, conv biases, eps 1.001e-5) vs
keras.applications.ResNet50, on each Keras engine in its own subprocess.

Timings alternate between the two models and report the median of each, so a noisy shared machine
slows both alike; the ratio (ours / anchor) is the figure that matters. Target: <= 1.05.

    python benchmarks/overhead.py [--repeats 15] [--engines jax,tensorflow,torch]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

BATCHES = (1, 8)
SIZE = 224


def _alternate(ours, anchor, x, repeats: int) -> tuple[float, float]:
    ours(x), anchor(x)  # warm-up: compilation, allocator, caches
    ours(x), anchor(x)
    t_ours, t_anchor = [], []
    for _ in range(repeats):
        for fn, sink in ((ours, t_ours), (anchor, t_anchor)):
            start = time.perf_counter()
            fn(x)
            sink.append(time.perf_counter() - start)
    return statistics.median(t_ours), statistics.median(t_anchor)


def bench_torch(repeats: int) -> list[dict]:
    import torch
    import torchvision

    import resnet_core as rc

    ours = rc.build("resnet50", backend="torch").eval()
    anchor = torchvision.models.resnet50().eval()
    anchor.load_state_dict(ours.state_dict())
    rows = []
    with torch.inference_mode():
        for batch in BATCHES:
            x = torch.randn(batch, 3, SIZE, SIZE)
            a, b = _alternate(ours, anchor, x, repeats)
            rows.append({"engine": "torch", "call": "forward", "anchor": "torchvision resnet50",
                         "batch": batch, "ours_ms": a * 1e3, "anchor_ms": b * 1e3})
    return rows


def _eager(keras, model):
    return lambda x: keras.ops.convert_to_numpy(model(x, training=False))


def bench_keras(repeats: int) -> list[dict]:
    import keras

    import resnet_core as rc

    ours = rc.build("keras_resnet50", backend="keras")
    anchor = keras.applications.ResNet50(weights=None)
    rows = []
    for batch in BATCHES:
        x = np.random.default_rng(0).normal(size=(batch, SIZE, SIZE, 3)).astype("float32")
        for call in ("predict_on_batch", "__call__"):
            if call == "predict_on_batch":
                fo, fa = ours.predict_on_batch, anchor.predict_on_batch
            else:
                fo, fa = _eager(keras, ours), _eager(keras, anchor)
            a, b = _alternate(fo, fa, x, repeats)
            rows.append({"engine": f"keras-{keras.backend.backend()}", "call": call,
                         "anchor": "keras.applications.ResNet50", "batch": batch,
                         "ours_ms": a * 1e3, "anchor_ms": b * 1e3})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--engines", default="jax,tensorflow,torch", help="Keras engines to compare")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--_worker", choices=("torch", "keras"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        rows = bench_torch(args.repeats) if args._worker == "torch" else bench_keras(args.repeats)
        print(json.dumps(rows))
        return 0
    rows = []
    jobs = [] if args.skip_torch else [("torch", None)]
    jobs += [("keras", e) for e in args.engines.split(",") if e]
    for worker, engine in jobs:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if engine:
            env["KERAS_BACKEND"] = engine
        proc = subprocess.run([sys.executable, __file__, "--_worker", worker, "--repeats", str(args.repeats)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{worker} {engine or ''}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{'engine':<17} {'call':<17} {'batch':>5} {'ours ms':>9} {'anchor ms':>10} {'ratio':>6}  anchor")
    worst = 0.0
    for r in rows:
        ratio = r["ours_ms"] / r["anchor_ms"]
        worst = max(worst, ratio)
        print(f"{r['engine']:<17} {r['call']:<17} {r['batch']:>5} {r['ours_ms']:>9.1f} {r['anchor_ms']:>10.1f} "
              f"{ratio:>6.3f}  {r['anchor']}")
    print(f"worst ratio: {worst:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
