"""Fidelity figures: eval parity of every preset on every engine, and measured mixed-precision errors.

Writes ``docs/parity.md``: for each preset at 224x224 (fp32, eval), each Keras engine's logits
error against torch and its worst layer; then, for a few presets, the errors of bf16 and fp16
mixed precision in eval and in train mode with gradients, against torch at the same dtype and
against torch in fp32. Those figures are what the tolerances in ``resnet_core.parity.TOLERANCES``
were set from. Target: every fp32 logit within 1e-5 relative.

    python benchmarks/fidelity.py [--presets resnet18,resnet50] [--engines ...] [--sections fidelity,mixed,grad]

Heavy on a small machine (every torchvision preset, four engines): ``--presets`` runs a subset.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import resnet_core as rc
from resnet_core.parity import ENGINES, TOLERANCES, ParityReport
from resnet_core.parity.report import format_rows
from resnet_core.presets import (
    KERAS_APPLICATIONS_PRESETS,
    TIMM_BLOCK_PRESETS,
    TIMM_PRESETS,
    TIMM_RES2NET_PRESETS,
    TORCHVISION_PRESETS,
)

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1e-5
MIXED = (("tiny_resnext", 64), ("resnet50", 224))


def _pipe_table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    out.extend("| " + " | ".join(r) + " |" for r in rows[1:])
    return out


def fidelity_rows(report: ParityReport) -> list[dict]:
    logits = report.layers[-1]
    rows = []
    for engine, info in report.engines.items():
        if engine == report.reference:
            continue
        if info["status"] != "ok":
            rows.append({"preset": report.spec, "engine": engine, "status": info["status"],
                         "reason": info.get("reason", "")})
            continue
        m = logits.engines[engine]
        worst = max(report.layers, key=lambda e: e.engines[engine]["max_rel"])
        rows.append({"preset": report.spec, "engine": engine, "status": "ok", "max_abs": m["max_abs"],
                     "date": datetime.date.today().isoformat(),
                     "max_rel": m["max_rel"], "top1": m.get("top1"), "cosine": m["cosine"],
                     "worst_layer": worst.name, "worst_rel": worst.engines[engine]["max_rel"],
                     "seconds": info["seconds"]})
    return rows


def mixed_rows(report: ParityReport, size: int) -> list[dict]:
    rows = []
    for engine in [report.reference, *report.compared]:
        def worst(entries, key="max_rel", engine=engine):
            if not entries or (key == "vs_float32" and report.dtype == "float32"):
                return None
            if engine == report.reference:
                return max(e.reference_vs_float32 for e in entries) if key == "vs_float32" else None
            return max(e.engines[engine][key] for e in entries)

        logits = report.layers[-1]
        rows.append({
            "preset": report.spec, "size": size, "dtype": report.dtype, "mode": report.mode + ("+grad" if report.grad
                                                                                          else ""),
            "engine": engine, "activation": worst(report.layers), "logits": worst([logits]),
            "running": worst(report.running_stats), "grad": worst(report.gradients),
            "activation_vs_fp32": worst(report.layers, "vs_float32"),
            "grad_vs_fp32": worst(report.gradients, "vs_float32"),
            "grad_vs_fp64": (max(e.reference_vs_float64 for e in report.gradients)
                             if engine == report.reference and report.gradients
                             and report.gradients[0].reference_vs_float64 is not None else None),
        })
    return rows


def environment(reports: list[ParityReport]) -> dict[str, str]:
    versions: dict[str, str] = {"python": platform.python_version(), "platform": platform.platform()}
    devices = set()
    for report in reports:
        for info in report.engines.values():
            versions.update({k: v for k, v in info.get("versions", {}).items() if k != "python"})
            if "device" in info:
                devices.add(info["device"])
    versions["devices"] = ", ".join(sorted(devices))
    return versions


def _e(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}e}"


_FIDELITY_HEADER = ["preset", "engine", "logits max abs", "logits max rel", "top-1", "worst layer",
                    "worst layer rel", f"within {TARGET:.0e}"]
FAMILIES = (
    ("torchvision", set(TORCHVISION_PRESETS)),
    ("keras.applications", set(KERAS_APPLICATIONS_PRESETS)),
    ("timm: ECA, anti-aliased, ResNet-RS, SENet-154", set(TIMM_BLOCK_PRESETS)),
    ("timm: Res2Net, Res2NeXt", set(TIMM_RES2NET_PRESETS)),
    ("timm: pre-activation ResNetV2, BiT, GroupNorm / EvoNorm / FRN", {
        p for p in TIMM_PRESETS if p.startswith("resnetv2_") or p == "resnet50_gn"}),
    ("timm: ResNet-D / -T, SE", set(TIMM_PRESETS)),
)


def _families(fidelity: list[dict]) -> list[tuple[str, list[dict]]]:
    """Rows grouped by where the preset comes from, in table order; the first family that holds it wins."""
    groups: dict[str, list[dict]] = {}
    for r in fidelity:
        title = next((t for t, members in FAMILIES if r["preset"] in members), "other presets")
        groups.setdefault(title, []).append(r)
    order = [t for t, _ in FAMILIES] + ["other presets"]
    return [(t, groups[t]) for t in order if t in groups]


def _fidelity_cells(r: dict) -> list[str]:
    if r["status"] != "ok":
        return [r["preset"], r["engine"], r["status"], "-", "-", "-", "-", r.get("reason", "")[:60]]
    return [r["preset"], r["engine"], _e(r["max_abs"], 2), _e(r["max_rel"], 2), f"{r['top1']:.0%}",
            r["worst_layer"], _e(r["worst_rel"], 2), "yes" if r["max_rel"] <= TARGET else "**no**"]


def merge_rows(saved: list[dict], fresh: list[dict]) -> list[dict]:
    """The fresh rows replace the saved rows of the presets they cover; the others are kept, in order."""
    done = {r["preset"] for r in fresh}
    kept = [r for r in saved if r["preset"] not in done]
    return kept + fresh


def write_markdown(path: Path, fidelity: list[dict], mixed: list[dict], grad: list[dict], env: dict[str, str],
                   args) -> None:
    lines = [
        "# Parity: fidelity figures",
        "",
        f"Generated by `python benchmarks/fidelity.py` on {datetime.date.today().isoformat()}; do not edit by hand.",
        "",
        "Every figure is a relative error, max |output - reference| / max |reference|, against our PyTorch model "
        "(`torch`) with the same canonical weights (`resnet_core.testing.random_weights`: non-trivial batch-norm "
        "statistics and affine parameters) and the same images. Each engine runs in its own process "
        "(`resnet-core parity`); TF32 is off on every engine.",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".",
        "",
        f"## fp32, eval, {args.size}x{args.size}, batch {args.batch}",
        "",
        f"Target: every logit within {TARGET:.0e} relative. \"worst layer\" is the tap (stem, block, pool, logits) "
        "with the largest error on that engine.",
        "",
    ]
    for title, members in _families(fidelity):
        lines += [f"### {title}", ""]
        lines += _pipe_table([_FIDELITY_HEADER, *(_fidelity_cells(r) for r in members)])
        lines.append("")
    ok = [r for r in fidelity if r["status"] == "ok"]
    if ok:
        worst = max(ok, key=lambda r: r["max_rel"])
        lines += [f"Worst logits error: {worst['max_rel']:.2e} ({worst['preset']} on {worst['engine']}); "
                  f"{sum(r['max_rel'] <= TARGET for r in ok)}/{len(ok)} preset-engine pairs within {TARGET:.0e}."]
        when = sorted({r["date"] for r in fidelity if "date" in r})
        if len(when) > 1:
            lines += ["", f"Rows measured between {when[0]} and {when[-1]} (`--merge` updates the presets re-run)."]
    if mixed:
        lines += [
            "",
            "## Mixed precision (bf16, fp16): measured errors and the tolerances set from them",
            "",
            "torch runs under `torch.autocast`, Keras under the `mixed_bfloat16` / `mixed_float16` policies; weights "
            "stay fp32. Columns: worst over all layers (activation), logits, running statistics after one train step "
            "(running), gradients of every weight (grad), each against torch at the same dtype; then the worst "
            "activation and gradient against torch in fp32 (the true values), which the reference row shows for "
            "torch itself. Train mode uses batch statistics.",
            "",
        ]
        rows = [["preset", "size", "dtype", "mode", "engine", "activation", "logits", "running", "grad",
                 "activation vs fp32", "grad vs fp32"]]
        for r in mixed:
            rows.append([r["preset"], str(r["size"]), r["dtype"], r["mode"], r["engine"], _e(r["activation"]),
                         _e(r["logits"]), _e(r["running"]), _e(r["grad"]), _e(r["activation_vs_fp32"]),
                         _e(r["grad_vs_fp32"])])
        lines += _pipe_table(rows)
        lines += ["", *_mixed_summary(mixed)]
    if grad:
        lines += [
            "",
            "## fp32 gradients",
            "",
            "Gradients of `sum(logits * probe) / batch` (a fixed random probe) with respect to every weight, each "
            "engine with its own autodiff (torch autograd, `jax.grad`, `tf.GradientTape`, autograd through Keras's "
            "torch engine), worst tensor against torch; \"torch vs fp64\" is torch's fp32 gradient against its own "
            "float64 one: how much rounding alone moves these gradients.",
            "",
        ]
        rows = [["preset", "size", "mode", "engine", "outputs", "grad", "torch vs fp64"]]
        for r in grad:
            rows.append([r["preset"], str(r["size"]), r["mode"], r["engine"], _e(r["activation"]), _e(r["grad"]),
                         _e(r["grad_vs_fp64"])])
        lines += _pipe_table(rows)
        lines += [
            "",
            "Outputs agree to rounding, yet gradients of a deep network at 224x224 differ by up to a few 1e-2 "
            "between engines, and torch's own fp32 gradients by as much from float64: a ReLU mask or max-pool choice "
            "that flips on a 1e-7 change of its input, and the cancellation in batch-norm backward (train mode), "
            "make some gradient entries ill-conditioned. Small inputs (tiny_resnext at 64x64) stay near 1e-6.",
        ]
    lines += ["", "## Tolerances in force (`resnet_core.parity.TOLERANCES`)", ""]
    rows = [["dtype", "activation", "running", "grad"]]
    for dtype, kinds in TOLERANCES.items():
        rows.append([dtype, *(_tol(kinds[k]) for k in ("activation", "running", "grad"))])
    lines += _pipe_table(rows)
    lines += [
        "",
        "Each bound is about twice the worst figure measured for its dtype and kind (per engine where the engines "
        "measured apart; `*` is any other engine, and between two non-torch engines the loosest bound applies). "
        "fp32 outputs and running statistics differ by rounding noise, about 1e-6, so 1e-5 catches any real "
        "conversion bug: a wrong transpose, a swapped batch-norm tensor or a misplaced stride gives errors of "
        "order 1 at the first layer it touches, which the report names. fp32 gradients are less well "
        "conditioned (see the fp32 gradients section), so each gradient tensor is judged against torch's own "
        "fp32-vs-float64 error for that tensor: within 10 times it (`GRAD_MULTIPLE`; the basis is at least 1e-7, "
        "`GRAD_BASIS_FLOOR`), and the report prints each engine's worst multiple (table, verdict, JSON "
        "`grad_multiples`). Ties are resolved first: each engine's gradients are compared with a float64 backward "
        "that follows its own ReLU masks and max-pool winners wherever float64 is within 1e-5 of the tie, and "
        "torch's own error is measured the same way (docs/numerics.md; JSON `raw_grad_multiples` keeps the raw "
        "figures). On resnet18 and tiny_resnext at 65x77 (eval, batch 2) the worst multiples are "
        "1.9-3.1. The fp32 grad bound in the table applies only when the reference has no float64 gradients "
        "(a reference other than torch). Mixed precision is dominated by rounding (see torch's own error "
        "against fp32): those bounds catch mapping and layout bugs, errors of order 1, not small numeric drifts.",
        "",
        "## Notes",
        "",
        "- **TF32.** On NVIDIA GPUs since Ampere, PyTorch (cuDNN convolutions), TensorFlow and JAX/XLA may run fp32 "
        "convolutions and matmuls in TF32 (10-bit mantissa), which changes results at the 1e-3 level. "
        "`resnet-core parity` turns it off on every engine (`torch.backends.cuda.matmul.allow_tf32=False`, "
        "`torch.backends.cudnn.allow_tf32=False`, `tf.config.experimental.enable_tensor_float_32_execution(False)`, "
        "`jax_default_matmul_precision=highest`, and `NVIDIA_TF32_OVERRIDE=0` in every worker's environment) and "
        "lists each engine's setting in the report. To match these figures in your own code on a GPU, do the same.",
        "- **Running variance.** PyTorch updates `running_var` with the unbiased batch variance (x n/(n-1), n = "
        "N*H*W), Keras with the biased one; Keras's momentum is 1 - PyTorch's (the adapters set it). In train mode "
        "the report restates Keras's value in PyTorch's convention before comparing and keeps the raw difference "
        "in the JSON (`raw_max_rel`: 2.5e-2 on tiny_resnext at 64x64, whose last stage averages n = 8 values; "
        "1.2e-3 at 224x224).",
        "- **Devices.** Each engine uses its default device (a GPU when it has one); `--device cpu` hides GPUs from "
        "every engine. The report lists each engine's device.",
        "- **Speed.** Each engine starts a fresh process. On JAX, building a Keras model compiles every weight "
        "initializer (about 15-20 s for resnet50 on two CPU cores); `JAX_COMPILATION_CACHE_DIR=DIR` (and "
        "`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`) lets later runs reuse those compilations.",
        "- Reproduce a row: `resnet-core parity PRESET --size 224 --json report.json`.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _mixed_summary(mixed: list[dict]) -> list[str]:
    """Sentences computed from the figures, so a regenerated page cannot contradict its table."""
    out = []
    for dtype in ("bfloat16", "float16"):
        rows = [r for r in mixed if r["dtype"] == dtype]
        ref = [r for r in rows if r["activation"] is None]
        other = [r for r in rows if r["activation"] is not None]
        if not ref or not other:
            continue
        act = max(other, key=lambda r: r["activation"])
        ref_act = max(r["activation_vs_fp32"] or 0 for r in ref)
        other_act = max(r["activation_vs_fp32"] or 0 for r in other)
        text = (f"- {dtype}: worst layer against torch {act['activation']:.1e} ({act['engine']}, {act['preset']}, "
                f"{act['mode']}); against fp32, torch's own worst is {ref_act:.1e} and the Keras engines' "
                f"{other_act:.1e}, so every engine is about as close to the true values as torch is.")
        grads = [r["grad_vs_fp32"] for r in ref if r["grad_vs_fp32"] is not None]
        if grads:
            worst_grad = max(r["grad"] for r in other if r["grad"] is not None)
            text += (f" Gradients: torch's own differ from its fp32 gradients by up to {max(grads):.1e}; the "
                     f"engines differ from torch by up to {worst_grad:.1e}.")
        out.append(text)
    return out


def _tol(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:g}" for k, v in value.items())
    return f"{value:g}"


SECTIONS = ("fidelity", "mixed", "grad")


def run_fidelity(presets: list[str], args) -> tuple[list[dict], list[ParityReport]]:
    rows, reports = [], []
    for name in presets:
        start = time.perf_counter()
        report = rc.parity(name, backends=args.engines, size=args.size, batch=args.batch)
        reports.append(report)
        rows.extend(fidelity_rows(report))
        for r in fidelity_rows(report):
            print(f"{name:18s} {r['engine']:17s} " + (f"logits {r['max_rel']:.2e}  worst {r['worst_layer']} "
                  f"{r['worst_rel']:.2e}" if r["status"] == "ok" else r["status"]), flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows, reports


def run_measured(dtypes: tuple[str, ...], modes: tuple[tuple[str, bool], ...], args) -> tuple[list[dict], list]:
    """Errors recorded, not judged (tolerance 1e9): these runs are what the tolerances are set from."""
    rows, reports = [], []
    for name, size in MIXED:
        for dtype in dtypes:
            for mode, grad in modes:
                start = time.perf_counter()
                report = rc.parity(name, backends=args.engines, size=size, batch=args.batch, dtype=dtype, mode=mode,
                                   grad=grad, tolerance=1e9)
                reports.append(report)
                for r in mixed_rows(report, size):
                    rows.append(r)
                    print(f"{name} {dtype} {r['mode']:10s} {r['engine']:17s} act {_e(r['activation'])} "
                          f"running {_e(r['running'])} grad {_e(r['grad'])} (vs fp32: act "
                          f"{_e(r['activation_vs_fp32'])}; vs fp64: grad {_e(r['grad_vs_fp64'])})", flush=True)
                print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows, reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=",".join(TORCHVISION_PRESETS), help="comma-separated presets")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="fidelity (fp32 eval, every preset), mixed (bf16/fp16), grad (fp32 gradients)")
    parser.add_argument("--merge", metavar="JSON", help="start from an earlier --json file: keep its sections not run "
                        "and its fidelity rows of presets not run")
    parser.add_argument("--output", default=str(ROOT / "docs" / "parity.md"))
    parser.add_argument("--json", help="also write every row as JSON")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown from a --json file")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        args.size, args.batch = saved["size"], saved["batch"]
        write_markdown(Path(args.output), saved["fidelity"], saved["mixed"], saved.get("grad", []),
                       saved["environment"], args)
        print(f"wrote {args.output}")
        return 0
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        parser.error(f"--sections: expected some of {', '.join(SECTIONS)}")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for name in presets:
        rc.get_spec(name)  # unknown names fail before hours of work
    saved = json.loads(Path(args.merge).read_text()) if args.merge else {}
    results = {k: saved.get(k, []) for k in SECTIONS}
    env = saved.get("environment", {})
    reports: list[ParityReport] = []
    if "fidelity" in sections:
        fresh, done = run_fidelity(presets, args)
        results["fidelity"] = merge_rows(results["fidelity"], fresh)
        reports += done
    if "mixed" in sections:
        results["mixed"], done = run_measured(("bfloat16", "float16"), (("eval", False), ("train", True)), args)
        reports += done
    if "grad" in sections:
        results["grad"], done = run_measured(("float32",), (("eval", True), ("train", True)), args)
        reports += done
    env = {**env, **environment(reports)}
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "environment": env, "size": args.size,
                                               "batch": args.batch}, indent=1))
    write_markdown(Path(args.output), results["fidelity"], results["mixed"], results["grad"], env, args)
    print(f"wrote {args.output}")
    fidelity = results["fidelity"]
    print("\n".join(format_rows([["preset", "engine", "logits max rel", "worst layer"]] + [
        [r["preset"], r["engine"], _e(r.get("max_rel"), 2), r.get("worst_layer", r["status"])] for r in fidelity])))
    bad = [r for r in fidelity if r["status"] != "ok" or r["max_rel"] > TARGET]
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.pop("KERAS_BACKEND", None)  # the workers choose their own
    sys.exit(main())
