"""The parity figures: one entry per compared tensor, the report's verdict data and its JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnknownNameError


def group_of(canonical: str) -> str:
    """The tap a canonical tensor belongs to: 'stem', a block ('layer2.0'), the final 'norm' or 'fc'."""
    parts = canonical.split(".")
    if parts[0].startswith("layer") and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0] if parts[0] in ("fc", "norm") else "stem"


def judged(metrics: dict[str, float]) -> float:
    """The error a tensor is judged by: against the float64 backward that follows the engine's own ties
    when there is one (``tie_aware_rel``), else against the reference (``max_rel``)."""
    return metrics.get("tie_aware_rel", metrics["max_rel"])


@dataclass
class Entry:
    """One compared tensor (a layer's output, a running statistic or a gradient) on every engine.

    ``engines`` maps each compared engine to its metrics, among them ``max_rel`` and ``tolerance``;
    with mixed precision, ``vs_float32`` is its error against the reference run in fp32, and
    ``reference_vs_float32`` the reference's own; for fp32 gradients, ``reference_vs_float64`` is the
    reference's error against its own float64 gradient: how ill-conditioned that tensor is. Such a
    gradient's metrics carry ``multiple``: its ``max_rel`` over ``reference_vs_float64``.

    With tie resolution (:mod:`.ties`), ``reference_vs_float64_tie_aware`` is the reference's error against
    float64 following its own ReLU masks and max-pool winners (its arithmetic alone), ``basis_growth`` that
    basis over the raw one; each engine's ``tie_aware_rel`` is its error against float64 following its own,
    ``multiple`` that over the tie-aware basis (what is judged), ``raw_multiple`` the raw figure and
    ``tie_effect`` how far the engine's ties alone move the float64 gradient.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    engines: dict[str, dict[str, float]] = field(default_factory=dict)
    stage: str | None = None  # "C2".."C5" for the last block of a stage
    reference_vs_float32: float | None = None
    reference_vs_float64: float | None = None
    reference_vs_float64_tie_aware: float | None = None
    basis_growth: float | None = None

    @property
    def worst_rel_err(self) -> float:
        return max((m["max_rel"] for m in self.engines.values()), default=float("nan"))

    @property
    def ok(self) -> bool:
        return all(judged(m) <= m["tolerance"] for m in self.engines.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "shape": list(self.shape),
                               "worst_rel_err": _finite(self.worst_rel_err), "ok": self.ok,
                               "engines": {e: {**m, "ok": judged(m) <= m["tolerance"]}
                                           for e, m in self.engines.items()}}
        if self.stage:
            out["stage"] = self.stage
        for key in ("reference_vs_float32", "reference_vs_float64", "reference_vs_float64_tie_aware",
                    "basis_growth"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class ReportData:
    """Every engine against the reference, layer by layer; ``ok`` when all are within tolerance.

    The figures alone; :class:`resnet_core.parity.report.ParityReport` adds the table and the plot.
    """

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
    grad_rule: dict[str, float] | None = None  # {"multiple", "basis_floor"[, "tie_band"]}: fp32 gradients per tensor
    # engine -> the sites where its ReLU mask or max-pool winner differs from float64's: {site, kind, count,
    # beyond_band (differences too large to be ties: not followed), min_rel, max_rel (|x| / the site's max)}
    grad_ties: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

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
                if judged(m) > m["tolerance"]:
                    return {"kind": entry.kind, "name": entry.name, "engine": engine, "max_rel": judged(m),
                            "tolerance": m["tolerance"]}
        return None

    @property
    def grad_multiples(self) -> dict[str, float]:
        """Each engine's worst gradient error in units of the reference's own fp32-vs-float64 error."""
        return {engine: max((g.engines[engine]["multiple"] for g in self.gradients
                             if "multiple" in g.engines.get(engine, {})), default=float("nan"))
                for engine in self.compared if any("multiple" in g.engines.get(engine, {}) for g in self.gradients)}

    @property
    def raw_grad_multiples(self) -> dict[str, float]:
        """As :attr:`grad_multiples`, against the reference's gradients with every tie included."""
        return {engine: max(g.engines[engine]["raw_multiple"] for g in self.gradients
                            if "raw_multiple" in g.engines.get(engine, {}))
                for engine in self.compared if any("raw_multiple" in g.engines.get(engine, {}) for g in self.gradients)}

    @property
    def basis_growth(self) -> dict[str, float]:
        """Median, 90th percentile and largest growth of the gradient basis from tie resolution (empty without)."""
        values = sorted(g.basis_growth for g in self.gradients if g.basis_growth is not None)
        if not values:
            return {}
        pick = lambda q: values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]  # noqa: E731
        return {"median": pick(0.5), "p90": pick(0.9), "max": values[-1]}

    def layer(self, name: str) -> Entry:
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise UnknownNameError(f"No layer {name!r} in the report. Layers: {[e.name for e in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec, "mode": self.mode, "dtype": self.dtype, "grad": self.grad, "batch": self.batch,
            "size": list(self.size), "seed": self.seed, "reference": self.reference,
            "worst_rel_err": _finite(self.worst_rel_err), "ok": self.ok, "first_failure": self.first_failure,
            "tolerances": self.tolerances, "grad_rule": self.grad_rule,
            "grad_multiples": {e: _finite(m) for e, m in self.grad_multiples.items()},
            "raw_grad_multiples": {e: _finite(m) for e, m in self.raw_grad_multiples.items()},
            "grad_ties": self.grad_ties, "basis_growth": self.basis_growth, "engines": self.engines,
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


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value

