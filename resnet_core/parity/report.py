"""Metrics, tolerances and the parity report (table, JSON, plot), computed with numpy alone.

Relative error is max |diff| / max |reference| per tensor (:func:`resnet_core.testing.relative_error`),
so a tensor of small values is judged by its own scale, and a layer's figure does not depend on
how many elements it has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..plan import Plan
from ..testing import relative_error

# Largest relative error accepted against the reference, by dtype, by what is compared and, where the
# engines measured apart, by engine ("*": any other). Set at about twice the worst figure measured on
# CPU (tiny_resnext at 64x64, resnet50 at 224x224, eval and train; docs/parity.md has every figure).
# Outputs and running statistics in fp32 are rounding noise (~1e-6): 1e-5 catches any conversion bug.
# Gradients are not that well conditioned: a ReLU mask or a batch-norm backward turns a 1e-7 change in
# the forward pass into up to 2e-2 (resnet50 at 224, torch fp32 against torch float64, which the
# report shows per tensor), so their bound catches mapping and layout bugs (errors of order 1), not
# drifts. Mixed-precision bounds likewise; in bf16 even torch's gradients differ from fp32 by ~1.
Tolerance = float | dict[str, float]
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "float32": {"activation": 1e-5, "running": 1e-5, "grad": 1e-1},
    "bfloat16": {"activation": 1e-1, "running": {"keras-jax": 1e-2, "*": 5e-3}, "grad": 1.5},
    "float16": {"activation": 1e-2, "running": 1e-3, "grad": 1.0},
}


def tolerance_for(dtype: str, kind: str, engine: str, reference: str = "torch") -> float:
    """The tolerance of ``engine`` against ``reference`` for ``kind`` at ``dtype``."""
    value = TOLERANCES[dtype][kind]
    if isinstance(value, dict):  # measured against torch; between two other engines, the loosest bound
        return value.get(engine, value["*"]) if reference == "torch" else max(value.values())
    return float(value)


KINDS = ("activation", "running", "grad")


def compare(output: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """max abs, max rel, mean abs and cosine similarity of ``output`` against ``reference``, and the
    reference's scale (max |reference|, the denominator of max rel)."""
    out = np.asarray(output, np.float64)
    ref = np.asarray(reference, np.float64)
    diff = np.abs(out - ref)
    norms = np.linalg.norm(out) * np.linalg.norm(ref)
    cosine = float(np.dot(out.ravel(), ref.ravel()) / norms) if norms > 0 else float(np.array_equal(out, ref))
    return {
        "max_abs": float(diff.max(initial=0.0)),
        "max_rel": relative_error(out, ref),
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "cosine": cosine,
        "scale": float(np.abs(ref).max(initial=0.0)),
    }


def topk_agreement(output: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Fraction of samples whose top-k classes (as a set) are the same in both; k is capped at the class count."""
    k = min(k, reference.shape[-1])
    top = lambda a: np.sort(np.argsort(-np.asarray(a, np.float64), axis=-1, kind="stable")[:, :k], axis=-1)  # noqa: E731
    return float(np.mean(np.all(top(output) == top(reference), axis=-1)))


def group_of(canonical: str) -> str:
    """The tap a canonical tensor belongs to: 'stem', a block ('layer2.0'), the final 'norm' or 'fc'."""
    parts = canonical.split(".")
    if parts[0].startswith("layer") and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ("fc", "norm") else "stem"


@dataclass
class Entry:
    """One compared tensor (a layer's output, a running statistic or a gradient) on every engine.

    ``engines`` maps each compared engine to its metrics, among them ``max_rel`` and ``tolerance``;
    with mixed precision, ``vs_float32`` is its error against the reference run in fp32, and
    ``reference_vs_float32`` the reference's own; for fp32 gradients, ``reference_vs_float64`` is the
    reference's error against its own float64 gradient: how ill-conditioned that tensor is.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    engines: dict[str, dict[str, float]] = field(default_factory=dict)
    stage: str | None = None  # "C2".."C5" for the last block of a stage
    reference_vs_float32: float | None = None
    reference_vs_float64: float | None = None

    @property
    def worst_rel_err(self) -> float:
        return max((m["max_rel"] for m in self.engines.values()), default=float("nan"))

    @property
    def ok(self) -> bool:
        return all(m["max_rel"] <= m["tolerance"] for m in self.engines.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "shape": list(self.shape),
                               "worst_rel_err": _finite(self.worst_rel_err), "ok": self.ok,
                               "engines": {e: {**m, "ok": m["max_rel"] <= m["tolerance"]}
                                           for e, m in self.engines.items()}}
        if self.stage:
            out["stage"] = self.stage
        for key in ("reference_vs_float32", "reference_vs_float64"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class ParityReport:
    """Every engine against the reference, layer by layer; ``ok`` when all are within tolerance."""

    spec: str
    mode: str
    dtype: str
    grad: bool
    batch: int
    size: tuple[int, int]
    seed: int
    reference: str
    tolerances: dict[str, dict[str, float]]  # kind -> engine -> tolerance
    engines: dict[str, dict[str, Any]]
    layers: list[Entry]
    running_stats: list[Entry] = field(default_factory=list)
    gradients: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> list[str]:
        """Engines compared against the reference."""
        return [e for e, info in self.engines.items() if info["status"] == "ok" and e != self.reference]

    def entries(self) -> list[Entry]:
        return [*self.layers, *self.running_stats, *self.gradients]

    @property
    def worst_rel_err(self) -> float:
        """The largest relative error of anything compared (NaN when nothing was)."""
        return max((e.worst_rel_err for e in self.entries() if e.engines), default=float("nan"))

    @property
    def failed_engines(self) -> list[str]:
        return [e for e, info in self.engines.items() if info["status"] == "failed"]

    @property
    def ok(self) -> bool:
        """At least one engine compared, none crashed, and every tensor within its tolerance."""
        return bool(self.compared) and not self.failed_engines and all(e.ok for e in self.entries())

    @property
    def first_failure(self) -> dict[str, Any] | None:
        """The first tensor over tolerance, in network order (outputs, then running stats, then gradients).

        For outputs this is where a conversion bug lives: every layer before it agrees.
        """
        for entry in self.entries():
            for engine, m in entry.engines.items():
                if m["max_rel"] > m["tolerance"]:
                    return {"kind": entry.kind, "name": entry.name, "engine": engine, "max_rel": m["max_rel"],
                            "tolerance": m["tolerance"]}
        return None

    def layer(self, name: str) -> Entry:
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise KeyError(f"No layer {name!r} in the report. Layers: {[e.name for e in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "mode": self.mode, "dtype": self.dtype, "grad": self.grad, "batch": self.batch,
            "size": list(self.size), "seed": self.seed, "reference": self.reference,
            "worst_rel_err": _finite(self.worst_rel_err), "ok": self.ok, "first_failure": self.first_failure,
            "tolerances": self.tolerances, "engines": self.engines,
            "layers": [e.to_dict() for e in self.layers],
            "running_stats": [e.to_dict() for e in self.running_stats],
            "gradients": [e.to_dict() for e in self.gradients],
            "notes": self.notes,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def table(self) -> str:
        """The terminal report: per-block worst relative error of every engine against the reference."""
        engines = self.compared
        size = f"{self.size[0]}x{self.size[1]}"
        lines = [f"parity {self.spec}: mode={self.mode}{' +grad' if self.grad else ''}, dtype={self.dtype}, "
                 f"batch={self.batch}, size={size}, reference={self.reference}"]
        for name, info in self.engines.items():
            lines.append("  " + _engine_line(name, info))
        if engines:
            sections = [("outputs" + (" (batch statistics)" if self.mode == "train" else ""), self.layers, False)]
            if self.running_stats:
                sections.append(("running statistics after one step", self.running_stats, True))
            if self.gradients:
                sections.append(("gradients", self.gradients, True))
            for title, entries, grouped in sections:
                lines.append("")
                lines.extend(_section(title, entries, engines, grouped))
            logits = next((e for e in self.layers if e.name == "logits"), None)
            if logits is not None:
                lines.append("")
                lines.extend(_logits_lines(logits, engines))
            if any(e.reference_vs_float32 is not None for e in self.layers):
                lines.append("")
                lines.extend(_baseline_lines(self))
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        tol = ", ".join(f"{k} {_tol_text(v)}" for k, v in self.tolerances.items())
        if not self.compared:
            return f"NOT CHECKED: no engine besides the reference {self.reference} ran"
        if self.failed_engines:
            return f"FAIL: engine(s) crashed: {', '.join(self.failed_engines)}"
        first = self.first_failure
        if first is None:
            return f"OK: worst relative error {self.worst_rel_err:.1e} (tolerances: {tol})"
        return (f"FAIL: first over tolerance: {first['kind']} {first['name']} on {first['engine']} "
                f"({first['max_rel']:.1e} > {first['tolerance']:g}); worst {self.worst_rel_err:.1e}")

    def plot(self, path: str | Path) -> None:
        """A PNG of the relative error per layer (log scale), one line per engine pair."""
        try:
            import matplotlib
        except ImportError:
            raise ImportError("--plot needs matplotlib: pip install 'resnet-core[plot]'") from None
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        panels = [(f"outputs ({self.mode})", self.layers, False)]
        if self.running_stats:
            panels.append(("running statistics (per block)", self.running_stats, True))
        if self.gradients:
            panels.append(("gradients (per block)", self.gradients, True))
        fig, axes = plt.subplots(len(panels), 1, figsize=(max(8.0, 0.35 * len(self.layers) + 3), 3.6 * len(panels)),
                                 squeeze=False)
        for ax, (title, entries, grouped) in zip(axes[:, 0], panels, strict=True):
            rows = _grouped(entries) if grouped else [(e.name, [e]) for e in entries]
            names = [name for name, _ in rows]
            for engine in self.compared:
                values = [max(e.engines[engine]["max_rel"] for e in group if engine in e.engines) for _, group in rows]
                ax.plot(range(len(names)), [max(v, 1e-12) for v in values], marker="o", ms=3,
                        label=f"{engine} vs {self.reference}")
            tol = max(m["tolerance"] for e in entries for m in e.engines.values())
            ax.axhline(tol, color="red", ls="--", lw=1, label="tolerance")
            ax.set_yscale("log")
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
            ax.set_ylabel("max |diff| / max |ref|")
            ax.set_title(f"{self.spec} {title}, {self.dtype}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _tol_text(tolerances: Mapping[str, float]) -> str:
    values = sorted(set(tolerances.values()))
    if len(values) == 1:
        return f"{values[0]:g}"
    return "/".join(f"{e} {v:g}" for e, v in tolerances.items())


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _engine_line(name: str, info: Mapping[str, Any]) -> str:
    if info["status"] != "ok":
        return f"{name}: {info['status'].upper()} ({info.get('reason', '')})"
    versions = info.get("versions", {})
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("python", "numpy", "resnet_core"))
    return f"{name}: {shown}; device {info.get('device', '?')}; TF32 {info.get('tf32', '?').split(' ')[0]}; " \
           f"{info.get('seconds', 0):.1f} s"


def _grouped(entries: Sequence[Entry]) -> list[tuple[str, list[Entry]]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(group_of(entry.name), []).append(entry)
    return list(groups.items())


def _section(title: str, entries: Sequence[Entry], engines: Sequence[str], grouped: bool) -> list[str]:
    rows = _grouped(entries) if grouped else [(e.name + (f" ({e.stage})" if e.stage else ""), [e]) for e in entries]
    first_col = "block" if grouped else "layer"
    header = [first_col, "tensors" if grouped else "shape", *engines]
    conditioning = all(e.reference_vs_float64 is not None for e in entries)
    if conditioning:  # the reference against its own float64 result: rounding alone moves it this much
        header.append("ref vs fp64")
    body = []
    for name, group in rows:
        cells = [name, str(len(group)) if grouped else "x".join(str(d) for d in group[0].shape)]
        for engine in engines:
            present = [e for e in group if engine in e.engines]
            if not present:  # an exported artifact has the final output only
                cells.append("-  ")
                continue
            worst = max(present, key=lambda e: e.engines[engine]["max_rel"])
            value = worst.engines[engine]["max_rel"]
            cells.append(f"{value:.1e}" + (" !" if value > worst.engines[engine]["tolerance"] else "  "))
        if conditioning:
            cells.append(f"{max(e.reference_vs_float64 for e in group):.1e}")
        body.append(cells)
    tol = _tol_text({e: m["tolerance"] for entry in entries for e, m in entry.engines.items()})
    title = f"{title} - max |diff| / max |ref| vs reference (! = over tolerance {tol})"
    return [title, *format_rows([header, *body], left=2)]


def _logits_lines(entry: Entry, engines: Sequence[str]) -> list[str]:
    header = ["logits", "max abs", "max rel", "mean abs", "cosine", "top-1", "top-5"]
    body = []
    for engine in engines:
        m = entry.engines[engine]
        body.append([engine, f"{m['max_abs']:.2e}", f"{m['max_rel']:.2e}", f"{m['mean_abs']:.2e}",
                     f"{m['cosine']:.9f}", f"{m['top1']:.0%}", f"{m['top5']:.0%}"])
    return format_rows([header, *body], left=1)


def _baseline_lines(report: ParityReport) -> list[str]:
    """Each engine's mixed-precision outputs against the reference engine run in fp32."""
    last = report.layers[-1]
    header = [f"vs {report.reference} float32", f"{last.name} max rel", "worst layer", "worst max rel"]
    rows = []
    for engine in [report.reference, *report.compared]:
        values = [(e.name, e.reference_vs_float32 if engine == report.reference else e.engines[engine]["vs_float32"])
                  for e in report.layers]
        worst = max(values, key=lambda item: item[1])
        rows.append([f"{engine} {report.dtype}", f"{values[-1][1]:.2e}", worst[0], f"{worst[1]:.2e}"])
    return format_rows([header, *rows], left=1)


def format_rows(rows: Sequence[Sequence[str]], left: int = 1, indent: str = "  ") -> list[str]:
    """Aligned text columns: the first ``left`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def cell(i: int, text: str) -> str:
        return text.ljust(widths[i]) if i < left else text.rjust(widths[i])

    return [(indent + "  ".join(cell(i, c) for i, c in enumerate(r))).rstrip() for r in rows]


def bn_counts(plan: Plan, batch: int, height: int, width: int) -> dict[str, int]:
    """Values per channel each batch norm averages over in training (N*H*W at its input), by norm name."""
    return {name: batch * h * w for name, (h, w) in plan.norm_sizes(height, width).items()}


def to_unbiased_running_var(new: np.ndarray, old: np.ndarray, momentum: float, count: int) -> np.ndarray:
    """A Keras running variance (biased batch variance) restated in PyTorch's convention (unbiased).

    Keras: ``new = (1-m) old + m var_b``; PyTorch: ``(1-m) old + m var_b n/(n-1)``; hence
    ``new + (new - (1-m) old) / (n-1)``, exact algebra with no division by the momentum.
    """
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    return new + (new - (1.0 - momentum) * old) / (count - 1)


def to_biased_running_var(new: np.ndarray, old: np.ndarray, momentum: float, count: int) -> np.ndarray:
    """The inverse of :func:`to_unbiased_running_var`: PyTorch's running variance in Keras's convention."""
    new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
    return new - (new - (1.0 - momentum) * old) / count
