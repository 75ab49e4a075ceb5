"""Conversion cost against a plain safetensors load + save of the same tensors, side by side in one run.

Targets (issue #3), for wide_resnet101_2 (127M parameters, ~508 MB in float32):
  memory: peak RSS of ``convert`` <= 2x the weight bytes above the interpreter's baseline RSS;
  time:   ``convert`` <= 2x a plain ``safetensors.numpy.load_file`` + ``save_file`` of the same tensors.

Every measurement runs in a fresh interpreter, which first imports everything the operation needs, then
records its baseline RSS; the peak is the process's high-water mark (VmHWM), and the table shows the
worst run's. Runs alternate between the operations (rotating which goes first); the time ratio is the
median over repeats of each conversion's time over the plain load + save of the same repeat, so a noisy
shared machine slows both sides of a ratio alike. The input ``.pth`` is made here from random weights
(no downloads).

    python benchmarks/bench_convert.py [--spec wide_resnet101_2] [--repeats 5] [--workdir DIR]

"time ratio" is wall time over the plain load + save's; "cpu s" (user + system, all threads) is shown
beside it because a shared machine stretches wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    {imports}

    def rss(field):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    def cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    src, dst = sys.argv[1], sys.argv[2]
    if os.path.exists(dst):
        os.remove(dst)
    base = rss("VmRSS")
    c0, t0 = cpu(), time.perf_counter()
    {operation}
    seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
    print(json.dumps({{"seconds": seconds, "cpu": cpu_seconds, "base": base, "peak": rss("VmHWM")}}))
""")

OPERATIONS = {
    "safetensors load+save": (
        "import numpy, safetensors.numpy as stn",
        "stn.save_file(stn.load_file(src), dst)",
    ),
    "convert .pth -> .weights.h5": (
        "import numpy, torch, h5py\nfrom resnet_core.io import convert",
        "convert(src, dst)",
    ),
    "convert .pth -> .safetensors": (
        "import numpy, torch\nfrom resnet_core.io import convert",
        "convert(src, dst)",
    ),
}


def _run(name: str, src: Path, dst: Path) -> dict:
    imports, operation = OPERATIONS[name]
    code = CHILD.format(imports=imports, operation=operation)
    out = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _make_inputs(spec: str, work: Path) -> tuple[Path, Path, int]:
    import numpy as np
    import safetensors.numpy as stn
    import torch

    from resnet_core.io import write_weights
    from resnet_core.testing import random_weights

    weights = random_weights(spec, seed=0)
    nbytes = sum(a.nbytes for a in weights.values())
    pth, st = work / f"{spec}.pth", work / f"{spec}.safetensors"
    if not pth.exists():
        write_weights(pth, weights, spec)
    if not st.exists():
        stn.save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(st))
    del weights, torch
    return pth, st, nbytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="wide_resnet101_2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", help="keep inputs here (default: a temporary directory)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        pth, st, nbytes = _make_inputs(args.spec, work)
        targets = {
            "safetensors load+save": (st, work / "out_plain.safetensors"),
            "convert .pth -> .weights.h5": (pth, work / "out.weights.h5"),
            "convert .pth -> .safetensors": (pth, work / "out.safetensors"),
        }
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        names = list(targets)
        for repeat in range(args.repeats):
            for name in names[repeat % 3:] + names[:repeat % 3]:  # rotate: no operation always runs first
                runs[name].append(_run(name, *targets[name]))
        for _, dst in targets.values():
            if dst.exists():
                os.remove(dst)

    plain = runs["safetensors load+save"]
    print(f"{args.spec}: {nbytes / 1e6:,.0f} MB of weights; medians of {args.repeats} runs, each in a fresh process; "
          "time ratio: median of the per-repeat ratios to the plain load+save of the same repeat")
    header = (f"{'operation':<30} {'time s':>7} {'time ratio':>10} {'cpu s':>6} {'peak above base MB':>19} "
              f"{'memory ratio':>12}")
    print(header)
    print("-" * len(header))
    ok = True
    for name in targets:
        seconds = statistics.median(r["seconds"] for r in runs[name])
        t_ratio = statistics.median(r["seconds"] / p["seconds"] for r, p in zip(runs[name], plain, strict=True))
        above = max(r["peak"] - r["base"] for r in runs[name])  # the worst run: memory is the hard limit
        m_ratio = above / nbytes
        if name.startswith("convert"):
            ok &= t_ratio <= 2.0 and m_ratio <= 2.0
        cpu = statistics.median(r["cpu"] for r in runs[name])
        print(f"{name:<30} {seconds:>7.2f} {t_ratio:>10.2f} {cpu:>6.2f} {above / 1e6:>19,.0f} {m_ratio:>12.2f}")
    print(f"targets (convert rows): time ratio <= 2.00 and memory ratio <= 2.00: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
