"""Our models against the anchors they replace, side by side in one process per engine.

torch: our resnet50 vs torchvision's resnet50 (same architecture, v1.5).
Keras, on each engine in its own subprocess:
  v1:   our keras_resnet50 (stride on the 1x1, conv biases, eps 1.001e-5) vs keras.applications.ResNet50;
  v1.5: our resnet50 (the torchvision architecture users convert) vs keras-hub's ResNet of the same spec
        (ResNetImageClassifier built by ``rc.to_peer(spec, weights, "keras-hub")``), the Keras model
        that computes the v1.5 network.

Timings alternate between the two models, call by call. Each row shows the median time of each with its
min-max, and the ratio ours / anchor as the median of the per-call ratios (min-max beside it): a noisy
shared machine slows both sides of a pair alike. Target: every median ratio <= 1.05; exits 1 otherwise.

    python benchmarks/overhead.py [--repeats 15] [--batches 1,8] [--size 224] [--engines jax,tensorflow,torch]
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

TARGET = 1.05


def _alternate(ours, anchor, x, repeats: int) -> dict[str, list[float]]:
    """Per-call times in ms, the two models called in turn (the first of each pair alternating)."""
    ours(x), anchor(x)  # warm-up: compilation, allocator, caches
    ours(x), anchor(x)
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    for i in range(repeats):
        pair = (("ours", ours), ("anchor", anchor))
        for key, fn in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            fn(x)
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def _row(engine: str, call: str, anchor: str, batch: int, times: dict[str, list[float]], model: str) -> dict:
    return {"engine": engine, "call": call, "model": model, "anchor": anchor, "batch": batch,
            "ours_ms": times["ours"], "anchor_ms": times["anchor"]}


def bench_torch(repeats: int, batches: list[int], size: int) -> list[dict]:
    import torch
    import torchvision

    import resnet_core as rc

    ours = rc.build("resnet50", backend="torch").eval()
    anchor = torchvision.models.resnet50().eval()
    anchor.load_state_dict(ours.state_dict())
    rows = []
    with torch.inference_mode():
        for batch in batches:
            x = torch.randn(batch, 3, size, size)
            rows.append(_row("torch", "forward", "torchvision resnet50", batch, _alternate(ours, anchor, x, repeats),
                             "resnet50"))
    return rows


def _eager(keras, model):
    return lambda x: keras.ops.convert_to_numpy(model(x, training=False))


def _keras_pairs(keras, size: int):
    """(our preset, our model, anchor name, anchor model): v1 against keras.applications, v1.5 against keras-hub."""
    import resnet_core as rc
    from resnet_core.testing import random_weights

    yield ("keras_resnet50", rc.build("keras_resnet50", backend="keras"), "keras.applications.ResNet50",
           keras.applications.ResNet50(weights=None, input_shape=(size, size, 3)))
    spec = rc.get_spec("resnet50")
    weights = random_weights(spec)
    ours = rc.build(spec, backend="keras")
    rc.set_weights(ours, weights)
    yield "resnet50", ours, "keras-hub ResNet (v1.5)", rc.to_peer(spec, weights, "keras-hub")


def bench_keras(repeats: int, batches: list[int], size: int) -> list[dict]:
    import keras

    rows = []
    engine = f"keras-{keras.backend.backend()}"
    for preset, ours, anchor_name, anchor in _keras_pairs(keras, size):
        for batch in batches:
            x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32")
            for call in ("predict_on_batch", "__call__"):
                if call == "predict_on_batch":
                    fo, fa = ours.predict_on_batch, anchor.predict_on_batch
                else:
                    fo, fa = _eager(keras, ours), _eager(keras, anchor)
                rows.append(_row(engine, call, anchor_name, batch, _alternate(fo, fa, x, repeats), preset))
        del ours, anchor
        keras.backend.clear_session()
    return rows


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--engines", default="jax,tensorflow,torch", help="Keras engines to compare")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--_worker", choices=("torch", "keras"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]
    if args._worker:
        bench = bench_torch if args._worker == "torch" else bench_keras
        rows = bench(args.repeats, batches, args.size)
        print(json.dumps(rows))
        return 0
    rows = []
    jobs = [] if args.skip_torch else [("torch", None)]
    jobs += [("keras", e) for e in args.engines.split(",") if e]
    for worker, engine in jobs:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if engine:
            env["KERAS_BACKEND"] = engine
        proc = subprocess.run([sys.executable, __file__, "--_worker", worker, "--repeats", str(args.repeats),
                               "--batches", args.batches, "--size", str(args.size)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{worker} {engine or ''}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{args.size}x{args.size}, {args.repeats} alternating calls per row; ms: median (min-max); "
          "ratio: median of the per-call ratios ours / anchor (min-max)")
    header = (f"{'engine':<17} {'ours':<15} {'call':<17} {'batch':>5} {'ours ms':>17} {'anchor ms':>17} "
              f"{'ratio':>6} {'min-max':>11}  anchor")
    print(header)
    worst = 0.0
    for r in rows:
        ratios = [a / b for a, b in zip(r["ours_ms"], r["anchor_ms"], strict=True)]
        ratio = statistics.median(ratios)
        worst = max(worst, ratio)
        print(f"{r['engine']:<17} {r['model']:<15} {r['call']:<17} {r['batch']:>5} {_ms(r['ours_ms']):>17} "
              f"{_ms(r['anchor_ms']):>17} {ratio:>6.3f} {min(ratios):>5.2f}-{max(ratios):<5.2f}  {r['anchor']}")
    missed = worst > TARGET
    print(f"worst median ratio: {worst:.3f} (target <= {TARGET}): {'NOT met' if missed else 'met'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
