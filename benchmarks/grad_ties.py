"""Gradient parity false alarms: raw rule against tie resolution (resnet_core.parity.ties).

Two measurements, both with --grad in fp32 and torch as the reference:

- ``inits``: the README's parity example (torchvision resnet18 at 65x77, batch 2) for N unseeded
  ``torchvision.models.resnet18()`` initialisations (the seeds drawn are printed, so a failure can be
  replayed). Each engine runs in one process for all inits (one build, one compile); then one torch process
  computes every engine's float64 gradients following its own pattern. Prints, per engine, how many inits
  fail under the raw rule and under the tie-aware one, and the worst multiples.
- ``resnet50``: one ``rc.parity("resnet50", size=224, grad=True)`` on torch and the given engines: raw and
  tie-aware worst multiples, the ties found, and the basis growth (median / p90 / max over the 161 tensors).

    python benchmarks/grad_ties.py inits [--count 30] [--engines keras-jax,keras-tensorflow,keras-torch]
    python benchmarks/grad_ties.py resnet50 [--engines ...] [--mode eval|train]

Heavy (minutes per engine on 2 cores): not run in CI. Numerics env such as ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2 or XLA_FLAGS=--xla_cpu_max_isa=AVX2 pass through to every worker.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import resnet_core as rc
from resnet_core.parity.engines import child_env
from resnet_core.parity.metrics import GRAD_MULTIPLE, judge_gradient
from resnet_core.testing import random_images

KERAS = ("keras-jax", "keras-tensorflow", "keras-torch")
SPEC, SIZE, BATCH = "resnet18", (65, 77), 2


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    """The inputs rc.parity uses at seed 0."""
    images = random_images(BATCH, *SIZE, channels=3, seed=0)
    probe = np.random.default_rng(1).normal(0.0, 1.0, (BATCH, 1000)).astype(np.float32)
    return images, probe


def _make_inits(work: Path, count: int) -> list[int | None]:
    import torch
    import torchvision

    if (work / "seeds.json").is_file():  # resumed: the inits drawn before
        seeds = json.loads((work / "seeds.json").read_text())
        if len(seeds) >= count:
            return seeds[:count]
    if all((work / f"w{i}.npz").is_file() for i in range(count)):
        return [None] * count  # drawn by a run that kept no seeds: the weights files are the record
    seeds = [random.SystemRandom().randrange(2**31) for _ in range(count)]
    (work / "seeds.json").write_text(json.dumps(seeds))
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)  # drawn at random, recorded so that a failing init can be replayed
        state = torchvision.models.resnet18().state_dict()
        np.savez(work / f"w{i}.npz",
                 **{k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")})
    return seeds


def _engine_worker(engine: str, work: Path, count: int) -> None:
    """In the engine's own process: fp32 gradients and pattern of every init (torch: also float64)."""
    from resnet_core.parity.worker import KerasRunner, TorchRunner

    spec = rc.get_spec(SPEC)
    runner = TorchRunner(spec, "float32") if engine == "torch" else KerasRunner(spec, "float32")
    images, probe = _inputs()
    for i in range(count):
        if (work / f"{engine}.{i}.npz").is_file():  # resumed
            continue
        with np.load(work / f"w{i}.npz") as data:
            runner.restore({k: data[k] for k in data.files})
        arrays = {f"grad/{k}": v for k, v in runner.grads(images, probe, False, record=True).items()}
        arrays.update({f"pattern/{k}": v for k, v in runner.pattern.items()})
        if engine == "torch":
            arrays.update({f"grad64/{k}": v for k, v in runner.grads_float64(images, probe, False).items()})
        np.savez(work / f"{engine}.{i}.npz", **arrays)


def _follow_worker(engines: list[str], work: Path, start: int, stop: int) -> None:
    """In a torch process: float64 gradients following each engine's pattern, and the ties taken."""
    from resnet_core.parity.worker import TorchRunner

    runner = TorchRunner(rc.get_spec(SPEC), "float32")
    images, probe = _inputs()
    for i in range(start, stop):
        if (work / f"ties.{i}.json").is_file():  # resumed
            continue
        ties = {}
        with np.load(work / f"w{i}.npz") as data:
            runner.restore({k: data[k] for k in data.files})
        arrays = {}
        for engine in engines:
            with np.load(work / f"{engine}.{i}.npz") as data:
                pattern = {k[len("pattern/"):]: data[k] for k in data.files if k.startswith("pattern/")}
            grads, found = runner.grads_following(images, probe, False, pattern)
            arrays.update({f"{engine}/{k}": v for k, v in grads.items()})
            ties[engine] = found
        np.savez(work / f"follow.{i}.npz", **arrays)
        (work / f"ties.{i}.json").write_text(json.dumps(ties))


def _spawn_all(commands: list[tuple[str, list[str]]]) -> None:
    """Run the workers side by side (each engine's numerics in its own process) and wait for all."""
    started = time.perf_counter()
    running = [subprocess.Popen([sys.executable, __file__, *args], env=child_env(engine))
               for engine, args in commands]
    if any(p.wait() for p in running):
        raise RuntimeError(f"a worker failed: {commands}")
    print(f"  {', '.join(args[0] + ' ' + args[1] for _, args in commands)}: {time.perf_counter() - started:.0f} s",
          flush=True)


def inits(count: int, engines: list[str], work: Path, workers: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    seeds = _make_inits(work, count)
    _spawn_all([(engine, ["_engine", engine, str(work), str(count)]) for engine in ["torch", *engines]])
    chunks = [(count * k // workers, count * (k + 1) // workers) for k in range(workers)]
    _spawn_all([("torch", ["_follow", ",".join(["torch", *engines]), str(work), str(a), str(b)])
                for a, b in chunks if b > a])
    ties = {f"{e}.{i}": found for i in range(count)
            for e, found in json.loads((work / f"ties.{i}.json").read_text()).items()}
    plan = rc.make_plan(rc.get_spec(SPEC))
    names = [p.name for p in plan.params if p.trainable]
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for i in range(count):
        with np.load(work / f"torch.{i}.npz") as data:
            ref = {k: data[k] for k in data.files}
        with np.load(work / f"follow.{i}.npz") as data:
            followed = {k: data[k] for k in data.files}
        for engine in engines:
            with np.load(work / f"{engine}.{i}.npz") as data:
                grads = {k: data[k] for k in data.files if k.startswith("grad/")}
            judged = [judge_gradient(grads[f"grad/{n}"], ref[f"grad/{n}"], ref[f"grad64/{n}"],
                                     followed[f"torch/{n}"], followed[f"{engine}/{n}"]) for n in names]
            results[engine].append({
                "init": i, "seed": seeds[i], "raw": max(j["raw_multiple"] for j in judged),
                "tie_aware": max(j["multiple"] for j in judged),
                "ties": sum(t["count"] for t in ties[f"{engine}.{i}"]),
                "torch_ties": sum(t["count"] for t in ties[f"torch.{i}"]),
                "beyond_band": sum(t["beyond_band"] for t in ties[f"{engine}.{i}"])})
    summary = {}
    for engine, rows in results.items():
        summary[engine] = {
            "inits": len(rows),
            "raw_failures": sum(r["raw"] > GRAD_MULTIPLE for r in rows),
            "tie_aware_failures": sum(r["tie_aware"] > GRAD_MULTIPLE for r in rows),
            "worst_raw": max(r["raw"] for r in rows), "worst_tie_aware": max(r["tie_aware"] for r in rows),
            "inits_with_ties": sum(r["ties"] > 0 for r in rows),
            "failing_raw_inits": [(r["init"], r["seed"]) for r in rows if r["raw"] > GRAD_MULTIPLE],
        }
        print(f"{engine}: {json.dumps(summary[engine])}", flush=True)
    return {"summary": summary, "rows": results}


def resnet50(engines: list[str], mode: str) -> dict:
    started = time.perf_counter()
    report = rc.parity("resnet50", backends=["torch", *engines], size=224, grad=True, mode=mode)
    print(report.table())
    out = {"ok": report.ok, "basis_growth": report.basis_growth, "torch_ties": report.grad_ties.get("torch"),
           "seconds": round(time.perf_counter() - started), "engines": {}}
    for engine in engines:
        out["engines"][engine] = {"raw": report.raw_grad_multiples.get(engine),
                                  "tie_aware": report.grad_multiples.get(engine),
                                  "ties": report.grad_ties.get(engine)}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    if sys.argv[1] == "_engine":
        return _engine_worker(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))
    if sys.argv[1] == "_follow":
        return _follow_worker(sys.argv[2].split(","), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("inits", "resnet50"))
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--engines", default=",".join(KERAS))
    parser.add_argument("--mode", default="eval", choices=("eval", "train"))
    parser.add_argument("--work", default="/tmp/grad_ties", help="inits: kept, and resumed from")
    parser.add_argument("--workers", type=int, default=3, help="inits: float64 processes side by side")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    engines = args.engines.split(",")
    result = inits(args.count, engines, Path(args.work), args.workers) if args.what == "inits" \
        else resnet50(engines, args.mode)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
