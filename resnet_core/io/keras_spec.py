"""The spec of a resnet-core Keras model, recovered from its layers alone (no Keras needed).

Saved, a resnet-core Keras model is a plain functional ``keras.Model`` of built-in layers, so any
Keras 3 loads it; it carries no spec. The spec is the one whose graph (:func:`keras_graph`) equals
the model's: candidates come from the weight shapes (:func:`resnet_core.io.infer.candidate_specs`),
then the fields weights do not show (epsilon, strides, pooling, ...) are settled by matching layer
configs. Only an exact match of every layer's class, config and inputs is accepted, so a recovered
spec never describes a different network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..drop_rates import rate_of_schedule
from ..keras_graph import VARIABLES, keras_graph
from ..mapping import canonical_name, keras_layer_name
from ..plan import Plan, make_plan
from ..spec import ANTI_ALIASES, DOWNSAMPLES, OUTPUT_STRIDES, POOL_PADDINGS, POOLINGS, STRIDE_BLOCKS, ResNetSpec
from ..tensor_roles import NORM_CLASSES
from ..tensor_roles import keras_layout as layout_of
from . import infer_resnest
from .infer import InferenceError, candidate_specs

Record = tuple[str, tuple[str, ...], tuple[tuple[str, Any], ...]]  # class, input layers, configured items
Seen = dict[str, tuple[str, tuple[str, ...], dict[str, Any]]]  # a model's layers: class, input layers, config
_PAIRS = ("kernel_size", "strides", "pool_size", "dilation_rate")  # an int n means (n, n)
# Fields weights do not show but layer configs do, with the values to try (None: read off the layers).
GRAPH_FIELDS: dict[str, tuple[Any, ...] | None] = {
    "stride_in_1x1": (False, True),
    "zero_init_residual": (False, True),
    "pooling": POOLINGS,
    "stem_pool": (True, False),
    "stem_pool_padding": POOL_PADDINGS,
    "downsample": DOWNSAMPLES,
    "stride_block": STRIDE_BLOCKS,
    "output_stride": OUTPUT_STRIDES,
    "bn_eps": None,
    "bn_momentum": None,
    "anti_alias": ANTI_ALIASES,  # a weightless pool, seen only in the layers
    "std_conv": (False, True),  # set together with std_conv_eps, read off the StdConv2D layers
    "norm_groups": None,
    "resnest_avd": (),  # ResNeSt's avd and avd_first (block sub-spec fields, see _changes)
}
# Norm layer classes (every one records its epsilon as "epsilon"; the grouped ones their group count).
_NORM_LAYERS = tuple(NORM_CLASSES.values())


def canonical_shapes(layers: Iterable[tuple[str, str, Sequence[tuple[int, ...]]]]) -> dict[str, tuple[int, ...]]:
    """Canonical names and shapes of ``(layer name, class, variable shapes)``, variables in Keras's order."""
    out = {}
    for name, cls, shapes in layers:
        for variable, shape in zip(VARIABLES.get(cls, ()), shapes, strict=False):
            out[canonical_name(name, variable)] = layout_of(cls, variable).canonical_shape(tuple(shape))
    return out


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    if isinstance(value, dict):
        if "class_name" in value and "config" in value:  # a serialised Keras object (an initializer)
            return value["class_name"]
        return tuple(sorted((k, _normal(v)) for k, v in value.items()))
    return value


def _inputs(nodes: Any) -> tuple[str, ...]:
    """The layers feeding a layer, from its serialised inbound nodes, in argument order."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if x.get("class_name") == "__keras_tensor__":
                found.append(x["config"]["keras_history"][0])
                return
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(nodes)
    return tuple(found)


def model_records(config: Mapping[str, Any]) -> Seen:
    """Each layer of a functional model's config (``model.get_config()`` or a ``.keras`` file's), by name."""
    out: Seen = {}
    for layer in config.get("layers", ()):
        settings = dict(layer.get("config") or {})
        if layer.get("class_name") == "InputLayer" and "batch_shape" in settings:
            settings["shape"] = list(settings["batch_shape"])[1:]
        out[layer["name"]] = (layer["class_name"], _inputs(layer.get("inbound_nodes", ())), settings)
    return out


def _ours(key: str, value: Any, cls: str) -> Any:
    if key in _PAIRS and isinstance(value, int) and cls != "BlurPool2D":  # ours keeps its ints; built-ins pair them
        return (value,) if cls == "Conv1D" else (value, value)
    if key == "padding" and cls == "ZeroPadding2D" and isinstance(value, int):
        return ((value, value), (value, value))
    if key.endswith("_initializer") and isinstance(value, str):
        return "".join(part.capitalize() for part in value.split("_"))  # "zeros" -> Keras's class "Zeros"
    return _normal(value)


def graph_records(spec: ResNetSpec) -> dict[str, Record]:
    layers, _ = keras_graph(make_plan(spec))
    return {x.name: (x.cls, x.inputs, tuple(sorted((k, _ours(k, v, x.cls)) for k, v in x.config.items())))
            for x in layers}


def _differences(expected: dict[str, Record], seen: Seen) -> list[str]:
    """What differs, one entry per layer present on one side only and per differing class, inputs or
    configured value (so a search can tell a change that fixes one setting in every layer)."""
    out = [name for name in seen if name not in expected]
    for name, (cls, inputs, config) in expected.items():
        got = seen.get(name)
        if got is None or got[0] != cls:
            out.append(name)
            continue
        if got[1] != inputs:
            out.append(f"{name} (inputs)")
        out.extend(f"{name} ({k})" for k, v in config if _normal(got[2].get(k)) != v)
    return out


def _changes(name: str, spec: ResNetSpec, seen: Seen) -> list[dict[str, Any]]:
    """The changes of ``name`` worth trying; std_conv comes with the epsilon its layers record."""
    if name == "resnest_avd":  # ResNeSt's avd pools: weightless, a block sub-spec's choice
        return infer_resnest.avd_changes(spec)
    if name == "std_conv":
        eps = [config.get("eps") for cls, _, config in seen.values() if cls == "StdConv2D"]
        return [{"std_conv": False}] + ([{"std_conv": True, "std_conv_eps": eps[0]}] if eps else [])
    return [{name: value} for value in _values(name, spec, seen)]


def _values(name: str, spec: ResNetSpec, seen: Seen) -> tuple[Any, ...]:
    choices = GRAPH_FIELDS[name]
    if choices is not None:
        return choices
    if name == "norm_groups":
        return tuple({config["groups"] for cls, _, config in seen.values() if "groups" in config
                      and cls in (NORM_CLASSES["group"], NORM_CLASSES["evo_s0"])})
    if name == "bn_eps":
        return tuple({config.get("epsilon") for cls, _, config in seen.values() if cls in _NORM_LAYERS})[:1]
    norms = [config for cls, _, config in seen.values() if cls == "BatchNormalization"]
    if not norms:
        return ()
    keras_momentum = float(norms[0].get("momentum", 0.0))
    short = float(f"{1.0 - keras_momentum:.12g}")  # 0.01, not 0.010000000000000009, when it maps back the same
    return (short if 1.0 - short == keras_momentum else 1.0 - keras_momentum,)


def _settle(spec: ResNetSpec, seen: Seen) -> tuple[ResNetSpec, list[str]]:
    """Change one graph field at a time, keeping the change that leaves fewest layers differing."""
    best, wrong = spec, _differences(graph_records(spec), seen)
    while wrong:
        improved = None
        for name in GRAPH_FIELDS:
            for changes in _changes(name, best, seen):
                if all(getattr(best, k) == v for k, v in changes.items()):
                    continue
                try:
                    trial = best.replace(**changes)
                    differing = _differences(graph_records(trial), seen)
                except (ValueError, TypeError):  # an invalid combination of fields
                    continue
                if len(differing) < len(wrong):
                    improved, wrong = trial, differing
        if improved is None:
            break
        best = improved
    return best, wrong


def _with_drop_rates(spec: ResNetSpec, seen: Seen) -> ResNetSpec:
    """``spec`` with the rates of the model's Dropout layers: the head's, and the drop_path_rate whose linear
    schedule gives every block's stochastic-depth rate (unchanged when none does: the layers then differ)."""
    def rate(layer: str) -> float:
        cls, _, config = seen.get(layer, ("", (), {}))
        return float(config.get("rate", 0.0)) if cls == "Dropout" else 0.0

    blocks = make_plan(spec).blocks
    path_rate = rate_of_schedule([rate(f"{keras_layer_name(b.name)}_drop_path") for b in blocks])
    try:
        return spec.replace(drop_rate=rate("head_drop"), drop_path_rate=path_rate or 0.0)
    except ValueError:  # e.g. a rate the spec refuses: the layer comparison reports the difference
        return spec


def recover_plan(config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], name: str | None = None
                 ) -> Plan:
    """The plan of :func:`recover_spec`'s spec: what an adapter needs to read a model loaded by plain Keras."""
    return make_plan(recover_spec(config, shapes, name))


def recover_spec(config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], name: str | None = None
                 ) -> ResNetSpec:
    """The spec whose Keras graph is exactly the model's (``config``: the functional model's config;
    ``shapes``: canonical names and shapes of its weights). Raises :class:`InferenceError` otherwise."""
    seen = model_records(config)
    closest: tuple[ResNetSpec, list[str]] | None = None
    for candidate in candidate_specs(shapes, preferred=name):
        spec, wrong = _settle(_with_drop_rates(candidate, seen), seen)
        if not wrong:
            return spec if name is None else spec.replace(name=name)
        if closest is None or len(wrong) < len(closest[1]):
            closest = (spec, wrong)
    assert closest is not None  # candidate_specs returns at least one spec or raises
    raise InferenceError(f"its layers fit no resnet-core spec: the closest ({closest[0].name}) differs in "
                         f"{len(closest[1])} layer(s), starting with {sorted(closest[1])[:3]}")
