"""The parity report as text: the terminal table, the verdict line and aligned columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from .results import Entry, ReportData, group_of, judged


def table(report: ReportData) -> str:
    """The terminal report: per-block worst relative error of every engine against the reference."""
    engines = report.compared
    size = f"{report.size[0]}x{report.size[1]}"
    lines = [f"parity {report.spec}: mode={report.mode}{' +grad' if report.grad else ''}, dtype={report.dtype}, "
             f"batch={report.batch}, size={size}, reference={report.reference}"]
    for name, info in report.engines.items():
        lines.append("  " + _engine_line(name, info))
    if engines:
        sections = [("outputs" + (" (batch statistics)" if report.mode == "train" else ""), report.layers, False)]
        if report.running_stats:
            sections.append(("running statistics after one step", report.running_stats, True))
        if report.gradients:
            sections.append(("gradients", report.gradients, True))
        for title, entries, grouped in sections:
            lines.append("")
            lines.extend(_section(title, entries, engines, grouped))
        logits = next((e for e in report.layers if e.name == "logits"), None)
        if logits is not None:
            lines.append("")
            lines.extend(_logits_lines(logits, engines))
        if report.grad_ties or report.basis_growth:
            lines.append("")
            lines.extend(_ties_lines(report))
        if any(e.reference_vs_float32 is not None for e in report.layers):
            lines.append("")
            lines.extend(_baseline_lines(report))
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append(verdict(report))
    return "\n".join(lines)


def verdict(report: ReportData) -> str:
    """One line: OK or FAIL, the first tensor over its bound, the bounds; gradients in units of the reference's
    own fp32-vs-float64 error when they are judged that way."""
    tol = ", ".join(f"{k} {_tol_text(v)}" for k, v in report.tolerances.items())
    if report.grad_rule:
        tol += (f"{', ' if tol else ''}grad per tensor {report.grad_rule['multiple']:g} x {report.reference}'s own "
                f"fp32-vs-float64 error (at least {report.grad_rule['basis_floor']:g})")
    if not report.compared:
        return f"NOT CHECKED: no engine besides the reference {report.reference} ran"
    if report.failed_engines:
        return f"FAIL: engine(s) crashed: {', '.join(report.failed_engines)}"
    first = report.first_failure
    multiples = ", ".join(f"{e} {m:.2g}x" for e, m in report.grad_multiples.items())
    multiples = f"; worst gradient error / {report.reference}'s own fp32 error: {multiples}" if multiples else ""
    raw = report.raw_grad_multiples
    if report.grad_ties is not None and any("tie_aware_rel" in m for g in report.gradients for m in g.engines.values()):
        multiples += " (ties resolved; raw " + ", ".join(f"{e} {m:.2g}x" for e, m in raw.items()) + ")"
    if first is None:
        return f"OK: worst relative error {report.worst_rel_err:.1e}{multiples} (tolerances: {tol})"
    return (f"FAIL: first over tolerance: {first['kind']} {first['name']} on {first['engine']} "
            f"({first['max_rel']:.1e} > {first['tolerance']:.2g}); worst {report.worst_rel_err:.1e}{multiples}")


def _ties_lines(report: ReportData) -> list[str]:
    """Where each engine's ReLU masks and max-pool winners differ from float64's, and what following them did."""
    lines = [f"gradient ties - ReLU masks / max-pool winners unlike float64's, followed within "
             f"{(report.grad_rule or {}).get('tie_band', 0):g} of the tie (|x| / the site's max)"]
    rows = [["engine", "sites", "ties", "sites (count, |x|/max from..to)", "beyond band"]]
    for engine, found in report.grad_ties.items():
        shown = "; ".join(f"{t['site']} {t['count']}" + (f" ({t['min_rel']:.0e}..{t['max_rel']:.0e})"
                                                          if t["count"] else "") for t in found[:4])
        rows.append([engine, str(len(found)), str(sum(t["count"] for t in found)),
                     (shown + (f"; +{len(found) - 4} more" if len(found) > 4 else "")) or "-",
                     str(sum(t["beyond_band"] for t in found))])
    lines.extend(format_rows(rows, left=1))
    growth = report.basis_growth
    if growth:
        lines.append(f"  basis (the reference's own error) after tie resolution / before: median "
                     f"{growth['median']:.2g}x, p90 {growth['p90']:.2g}x, max {growth['max']:.2g}x")
    return lines


def _tol_text(tolerances: Mapping[str, float]) -> str:
    values = sorted(set(tolerances.values()))
    if len(values) == 1:
        return f"{values[0]:g}"
    return "/".join(f"{e} {v:g}" for e, v in tolerances.items())


def _engine_line(name: str, info: Mapping[str, Any]) -> str:
    if info["status"] != "ok":
        return f"{name}: {info['status'].upper()} ({info.get('reason', '')})"
    versions = info.get("versions", {})
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("python", "numpy", "resnet_core"))
    return f"{name}: {shown}; device {info.get('device', '?')}; TF32 {info.get('tf32', '?').split(' ')[0]}; " \
           f"{info.get('seconds', 0):.1f} s"


def group_rows(entries: Sequence[Entry]) -> list[tuple[str, list[Entry]]]:
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(group_of(entry.name), []).append(entry)
    return list(groups.items())


def _section(title: str, entries: Sequence[Entry], engines: Sequence[str], grouped: bool) -> list[str]:
    rows = group_rows(entries) if grouped else [(e.name + (f" ({e.stage})" if e.stage else ""), [e]) for e in entries]
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
            worst = max(present, key=lambda e: judged(e.engines[engine]))
            value = judged(worst.engines[engine])
            flag = " !" if any(judged(e.engines[engine]) > e.engines[engine]["tolerance"]
                               for e in group if engine in e.engines) else "  "
            multiple = max(e.engines[engine].get("multiple", -1.0) for e in group if engine in e.engines)
            cells.append(f"{value:.1e}" + (f" ({multiple:.2g}x)" if multiple >= 0 else "") + flag)
        if conditioning:
            cells.append(f"{max(cast(float, e.reference_vs_float64) for e in group):.1e}")
        body.append(cells)
    if any("tie_aware_rel" in m for entry in entries for m in entry.engines.values()):
        tol = ("per tensor; against float64 following each engine's own ties; (Nx): over the reference's own "
               "fp32-vs-float64 error measured the same way")
    elif any("multiple" in m for entry in entries for m in entry.engines.values()):
        tol = "per tensor; (Nx): the worst error / the reference's own fp32-vs-float64 error"
    else:
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


def _baseline_lines(report: ReportData) -> list[str]:
    """Each engine's mixed-precision outputs against the reference engine run in fp32."""
    last = report.layers[-1]
    header = [f"vs {report.reference} float32", f"{last.name} max rel", "worst layer", "worst max rel"]
    rows = []
    for engine in [report.reference, *report.compared]:
        values = [(e.name, cast(float, e.reference_vs_float32) if engine == report.reference
                   else e.engines[engine]["vs_float32"])
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
