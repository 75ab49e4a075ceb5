"""Conversion cost against a plain load + save of the same .pth file, side by side in one run.

Targets (issue #3), for wide_resnet101_2 (127M parameters, ~508 MB in float32):
  memory: peak RSS of ``convert`` <= 2x the weight bytes above the interpreter's baseline RSS;
  time:   ``convert`` <= 2x a plain ``torch.load(mmap=True)`` + ``safetensors.torch.save_file`` of the same
          .pth file: the baseline reads the input format the conversion reads, and writes the cheapest output.

Every measurement runs in a fresh interpreter, which first imports everything the operation needs, then
records its baseline RSS; the peak is the process's high-water mark (VmHWM), and the table shows the
worst run's. Runs alternate between the operations (rotating which goes first); the time ratio is the
median over repeats of each conversion's time over the plain load + save of the same repeat, so a noisy
shared machine slows both sides of a ratio alike; its min-max over the repeats is shown beside it. The
input ``.pth`` is made here from random weights (no downloads). Exits 1 when a target is missed.

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

BASELINE = "plain .pth load+save"
OPERATIONS = {
    BASELINE: (
        "import numpy, torch, safetensors.torch as stt",
        "stt.save_file(torch.load(src, weights_only=True, mmap=True), dst)",
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


def _make_input(spec: str, work: Path) -> tuple[Path, int]:
    from resnet_core.io import write_weights
    from resnet_core.testing import random_weights

    weights = random_weights(spec, seed=0)
    nbytes = sum(a.nbytes for a in weights.values())
    pth = work / f"{spec}.pth"
    if not pth.exists():
        write_weights(pth, weights, spec)
    return pth, nbytes


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="wide_resnet101_2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", help="keep inputs here (default: a temporary directory)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        pth, nbytes = _make_input(args.spec, work)
        targets = {
            BASELINE: (pth, work / "out_plain.safetensors"),
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

    plain = runs[BASELINE]
    print(f"{args.spec}: {nbytes / 1e6:,.0f} MB of weights; medians of {args.repeats} runs, each in a fresh process "
          "(min-max beside them); time ratio: per-repeat ratio to the plain .pth load+save of the same repeat")
    header = (f"{'operation':<30} {'time s':>7} {'min-max':>11} {'time ratio':>10} {'min-max':>11} {'cpu s':>6} "
              f"{'peak above base MB':>19} {'memory ratio':>12}")
    print(header)
    print("-" * len(header))
    ok = True
    for name in targets:
        times = [r["seconds"] for r in runs[name]]
        ratios = [r["seconds"] / p["seconds"] for r, p in zip(runs[name], plain, strict=True)]
        seconds, t_ratio = statistics.median(times), statistics.median(ratios)
        above = max(r["peak"] - r["base"] for r in runs[name])  # the worst run: memory is the hard limit
        m_ratio = above / nbytes
        if name.startswith("convert"):
            ok &= t_ratio <= 2.0 and m_ratio <= 2.0
        cpu = statistics.median(r["cpu"] for r in runs[name])
        print(f"{name:<30} {seconds:>7.2f} {_spread(times):>11} {t_ratio:>10.2f} {_spread(ratios):>11} {cpu:>6.2f} "
              f"{above / 1e6:>19,.0f} {m_ratio:>12.2f}")
    print(f"targets (convert rows): time ratio <= 2.00 and memory ratio <= 2.00: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
