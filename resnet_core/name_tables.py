"""Declarative name tables between a peer's tensors and canonical ones, read in both directions.

A table is a list of module rows (peer pattern, canonical pattern, kind) and, per kind, the tensors a
module of that kind owns (peer variable, canonical suffix, layout). Patterns hold ``{s}`` (an integer),
``{s+1}`` (that integer shifted, for peers counting from another base) and ``{m:path}`` (a dotted
path). Import parses peer names and formats canonical ones; export does the reverse with the same
rows, so the two directions cannot drift. The first matching row wins, so specific rows go first.

The tables weight files are also read by (transformers' names in ``.pth``/``.safetensors``,
keras.applications' layer names in ``.weights.h5``) are here too, so ``io/`` and the peers share them
without io importing a peer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import to_numpy
from .errors import ResNetCoreError
from .layouts import Layout
from .plan import Plan
from .tensor_roles import canonical_suffixes, keras_variables

_TOKEN = re.compile(r"\{(\w+)(?::(path))?([+-]\d+)?\}")


class PeerError(ResNetCoreError, ValueError):
    """A peer model uses something ResNetSpec cannot express, or its tensors do not fit the spec."""


@dataclass(frozen=True)
class Pattern:
    """A name with ``{var}``, ``{var+k}`` and ``{var:path}`` fields; parses and formats."""

    text: str
    source: str = field(init=False, repr=False, compare=False)  # the regex, compiled on first use
    fields: tuple[tuple[str, bool, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields: list[tuple[str, bool, int]]
        parts, fields, pos = [], [], 0
        for match in _TOKEN.finditer(self.text):
            name, is_path, shift = match.group(1), bool(match.group(2)), int(match.group(3) or 0)
            if any(f[0] == name for f in fields):
                raise RuntimeError(f"Pattern {self.text!r} repeats field {name!r}")
            parts.append(re.escape(self.text[pos:match.start()]))
            parts.append(rf"(?P<{name}>[A-Za-z0-9_.]+?)" if is_path else rf"(?P<{name}>\d+)")
            fields.append((name, is_path, shift))
            pos = match.end()
        parts.append(re.escape(self.text[pos:]))
        object.__setattr__(self, "source", "".join(parts) + r"\Z")
        object.__setattr__(self, "fields", tuple(fields))

    @functools.cached_property
    def regex(self) -> re.Pattern:
        """Compiled when first parsed with: compiling every table's patterns took a third of ``import resnet_core``."""
        return re.compile(self.source)

    def parse(self, name: str) -> dict[str, Any] | None:
        match = self.regex.match(name)
        if match is None:
            return None
        values: dict[str, Any] = {}
        for key, is_path, shift in self.fields:
            text = match.group(key)
            values[key] = text if is_path else int(text) - shift
        return values

    def format(self, values: Mapping[str, Any]) -> str:
        def sub(match: re.Match) -> str:
            value = values[match.group(1)]
            return value if match.group(2) else str(value + int(match.group(3) or 0))

        return _TOKEN.sub(sub, self.text)


@dataclass(frozen=True)
class Row:
    """One tensor: peer name pattern <-> canonical name pattern, and how the peer lays it out."""

    peer: Pattern
    canonical: Pattern
    layout: Layout


@dataclass(frozen=True)
class ModuleRow:
    peer: str
    canonical: str
    kind: str


class Table:
    """Module rows expanded into tensor rows by each kind's tensor list; both directions use them."""

    def __init__(self, modules: Iterable[ModuleRow], kinds: Mapping[str, tuple[tuple[str, str, Layout], ...]],
                 separator: str = ".", ignored: Iterable[str] = ()):
        self.modules = tuple(modules)
        self.module_rows = tuple((Pattern(m.peer), Pattern(m.canonical)) for m in self.modules)
        self.rows = tuple(
            Row(Pattern(f"{m.peer}{separator}{var}"), Pattern(f"{m.canonical}.{suffix}"), layout)
            for m in self.modules for var, suffix, layout in kinds[m.kind]
        )
        self.ignored = tuple(Pattern(p) for p in ignored)

    def canonical_name(self, peer_name: str) -> tuple[str, Layout] | None:
        for row in self.rows:
            values = row.peer.parse(peer_name)
            if values is not None:
                return row.canonical.format(values), row.layout
        return None

    def peer_name(self, canonical_name: str) -> tuple[str, Layout] | None:
        for row in self.rows:
            values = row.canonical.parse(canonical_name)
            if values is not None:
                return row.peer.format(values), row.layout
        return None

    def peer_module(self, canonical_module: str) -> str:
        """The peer's module (or Keras layer) holding ``canonical_module``'s tensors."""
        for peer, canonical in self.module_rows:
            values = canonical.parse(canonical_module)
            if values is not None:
                return peer.format(values)
        raise RuntimeError(f"No table row names the peer module of {canonical_module!r}")

    def to_canonical(self, plan: Plan, source: Mapping[str, Any], peer: str) -> dict[str, np.ndarray]:
        """Canonical weights from the peer's tensors; every source tensor must be used exactly once."""
        expected = plan.param_index
        out: dict[str, np.ndarray] = {}
        unused, clashes, shapes = [], [], []
        for name, value in source.items():
            if any(p.parse(name) is not None for p in self.ignored):
                continue
            found = self.canonical_name(name)
            if found is None or found[0] not in expected:
                unused.append(name)
                continue
            canonical, layout = found
            if canonical in out:
                clashes.append(f"{name} -> {canonical}")
                continue
            array = np.ascontiguousarray(layout.to_canonical(np.asarray(value)))
            if array.shape != expected[canonical].shape:
                shapes.append(f"{name}: {array.shape} != {expected[canonical].shape}")
            out[canonical] = array
        missing = [n for n in expected if n not in out]
        problems = []
        if unused:
            problems.append(f"{len(unused)} {peer} tensor(s) unused by the inferred spec: {_clip(unused)}")
        if missing:
            problems.append(f"{len(missing)} canonical tensor(s) missing: {_clip(missing)}")
        if clashes:
            problems.append(f"tensors mapped twice: {_clip(clashes)}")
        if shapes:
            problems.append(f"shape mismatch (canonical layout): {_clip(shapes)}")
        if problems:
            raise PeerError(f"The {peer} model's tensors do not fit spec {plan.spec.name!r}: " + "; ".join(problems))
        return {n: out[n] for n in expected}

    def to_peer(self, plan: Plan, weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The peer's tensors (its names and layouts) from canonical weights, by the same rows."""
        out = {}
        for p in plan.params:
            found = self.peer_name(p.name)
            if found is None:
                raise PeerError(f"No table row maps canonical tensor {p.name!r} to the peer")
            name, layout = found
            out[name] = np.ascontiguousarray(layout.to_framework(to_numpy(weights[p.name])))
        return out


# A PyTorch module's tensors: the canonical suffixes are PyTorch's own names, in PyTorch's layout.
TORCH_KINDS = {"module": tuple((suffix, suffix, Layout.SAME) for suffix in canonical_suffixes())}
# BatchNorm's batch counter is training state, not a weight: the only tensor an import may skip.
TORCH_IGNORED = ("{m:path}.num_batches_tracked",)


def _clip(items: list[str], limit: int = 12) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


# A Keras layer's variables by kind (tensor_roles' vocabulary): Keras variable, canonical suffix, Keras layout.
KERAS_KINDS = {"conv": keras_variables("conv"), "bn": keras_variables("batch"), "dense": keras_variables("dense")}

# transformers: ResNetModel / ResNetForImageClassification.
# The backbone, as ResNetModel names it; stage and layer indices count from 0 there, from 1 here.
BACKBONE = (
    ModuleRow("embedder.embedder.convolution", "conv1", "module"),
    ModuleRow("embedder.embedder.normalization", "bn1", "module"),
    ModuleRow("encoder.stages.{s-1}.layers.{b}.shortcut.convolution", "layer{s}.{b}.downsample.0", "module"),
    ModuleRow("encoder.stages.{s-1}.layers.{b}.shortcut.normalization", "layer{s}.{b}.downsample.1", "module"),
    ModuleRow("encoder.stages.{s-1}.layers.{b}.layer.{i-1}.convolution", "layer{s}.{b}.conv{i}", "module"),
    ModuleRow("encoder.stages.{s-1}.layers.{b}.layer.{i-1}.normalization", "layer{s}.{b}.bn{i}", "module"),
)
# ResNetForImageClassification nests the backbone under "resnet." and adds the classifier.
CLASSIFIER = (*(ModuleRow(f"resnet.{r.peer}", r.canonical, r.kind) for r in BACKBONE),
              ModuleRow("classifier.1", "fc", "module"))
TRANSFORMERS_TABLES = {
    "ResNetModel": Table(BACKBONE, TORCH_KINDS, ignored=TORCH_IGNORED),
    "ResNetForImageClassification": Table(CLASSIFIER, TORCH_KINDS, ignored=TORCH_IGNORED),
}

# keras.applications ResNet50/101/152 (v1) and ResNet50V2/101V2/152V2, by layer name. Both name the stem conv,
# the main convs and the classifier alike; the shortcut conv (block layer 0) is matched before the {i} rows.
_KA_STEM = ModuleRow("conv1_conv", "conv1", "conv")
_KA_CONV = ModuleRow("conv{s+1}_block{b+1}_{i}_conv", "layer{s}.{b}.conv{i}", "conv")
_KA_HEAD = ModuleRow("predictions", "fc", "dense")
KERAS_APPLICATIONS_MODULES = (
    _KA_STEM,
    ModuleRow("conv1_bn", "bn1", "bn"),
    ModuleRow("conv{s+1}_block{b+1}_0_conv", "layer{s}.{b}.downsample.0", "conv"),
    ModuleRow("conv{s+1}_block{b+1}_0_bn", "layer{s}.{b}.downsample.1", "bn"),
    _KA_CONV,
    ModuleRow("conv{s+1}_block{b+1}_{i}_bn", "layer{s}.{b}.bn{i}", "bn"),
    _KA_HEAD,
)
KERAS_APPLICATIONS = Table(KERAS_APPLICATIONS_MODULES, KERAS_KINDS, separator="/")
KERAS_APPLICATIONS_MODULES_V2 = (
    _KA_STEM,
    ModuleRow("conv{s+1}_block{b+1}_preact_bn", "layer{s}.{b}.norm1", "bn"),
    ModuleRow("conv{s+1}_block{b+1}_0_conv", "layer{s}.{b}.downsample.conv", "conv"),
    _KA_CONV,
    ModuleRow("conv{s+1}_block{b+1}_{i}_bn", "layer{s}.{b}.norm{i+1}", "bn"),
    ModuleRow("post_bn", "norm", "bn"),
    _KA_HEAD,
)
KERAS_APPLICATIONS_V2 = Table(KERAS_APPLICATIONS_MODULES_V2, KERAS_KINDS, separator="/")
