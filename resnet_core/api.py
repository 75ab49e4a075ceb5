"""The public entry points: build a model (from a preset, a spec or pretrained weights), read and write its
canonical weights."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .backends import adapter_for, load_adapter
from .drop_rates import DROP_FIELDS
from .errors import InputError
from .finetune import FINE_TUNE_FIELDS, fine_tune
from .plan import make_plan
from .selection import get_backend
from .spec import ResNetSpec
from .weights_info import WeightsInfo

# Fields that may differ between a named architecture and the weights loaded into it.
_NOT_ARCHITECTURE = ("name", "zero_init_residual", *FINE_TUNE_FIELDS)

SourceArg = str | os.PathLike | Mapping[str, Any]


def build(spec: str | os.PathLike | ResNetSpec = "resnet50", backend: str | None = None,
          weights: SourceArg | None = None, dtype: str | None = None, **overrides: Any) -> Any:
    """A model for ``backend``: torch returns a ``torch.nn.Module`` taking NCHW, keras a ``keras.Model`` taking NHWC.

    ``spec`` is an architecture (a preset name, a ResNetSpec, a spec ``.json``) or a pretrained source:
    ``hf-hub:ORG/NAME[@REV]``, ``torchvision:NAME.TAG``, ``local-dir:PATH``, a model folder or a weights file
    (architecture and weights from it). A bare name is always a preset; write a path as a path (``./resnet18``),
    see :mod:`resnet_core.sources.resolve`. ``weights`` loads a source into the named architecture (an error
    names the fields that differ). Without weights, ``overrides`` replace spec fields (through
    :meth:`ResNetSpec.replace`); with them, only the fine-tuning ones may:
    ``num_classes`` (a new head, freshly initialised), ``include_top``/``pooling``, ``in_channels``
    (the stem kernel adapted as timm does), ``drop_rate``/``drop_path_rate`` (training regularisers).
    ``dtype`` ("bfloat16", "float16") builds the whole model in that precision (see ``resnet_core.precision``).

    Args:
        spec: A preset name, a :class:`ResNetSpec`, a spec ``.json``, or a pretrained source (hub name,
            model folder, weights file).
        backend: ``"torch"`` or ``"keras"``; None follows :func:`get_backend`.
        weights: Weights for the architecture ``spec`` names: a source as above, or a mapping of
            canonical names to arrays.
        dtype: Build in this precision (``"bfloat16"``, ``"float16"``) instead of float32.
        **overrides: Spec fields to replace (only the fine-tuning ones when weights are loaded).

    Returns:
        The framework's model, carrying ``.spec`` and ``.weights_info`` (None when randomly initialised).

    Raises:
        UnknownNameError: ``spec`` is a bare name and no preset.
        MissingFileError: ``spec`` or ``weights`` is a path that does not exist.
        SpecError: An override names no spec field or makes an invalid spec.
        InputError: ``weights`` hold another architecture, an override cannot apply to them, ``spec`` is a
            bare name that exists on disk (write ``./NAME``) or has an unknown ``prefix:``.
        SourceError: A hub name the hub forbids, or a source that cannot be fetched or read.
        WeightsMismatchError: ``weights`` do not match the architecture's tensors.
        MissingDependencyError: The backend's framework (or a source's package) is not installed.

    Example:
        Needs PyTorch (``pip install "resnet-core[torch]"``):

        ```python
        import torch
        import resnet_core as rc

        model = rc.build("resnet50", backend="torch", num_classes=10)
        logits = model(torch.zeros(1, 3, 224, 224))  # shape (1, 10)
        pretrained = rc.build("torchvision:resnet50.IMAGENET1K_V2", backend="keras")
        ```
    """
    from .sources import resolve

    source = resolve(spec, views=True)
    if weights is None:
        if source.weights is None:  # an architecture: the overrides may change any field
            return _architecture(source.spec.replace(**overrides) if overrides else source.spec, backend, dtype)
        return _pretrained(source.spec, source.weights, source.info, backend, overrides, dtype)
    if source.has_weights:
        raise InputError(f"{source.origin} holds weights already; pass weights= only with an architecture "
                         "(a preset name, a ResNetSpec or a spec .json)")
    if isinstance(weights, Mapping):
        found, arrays, info = source.spec, {k: np.asarray(v) for k, v in weights.items()}, None
    else:
        loaded = resolve(weights, spec=source.spec, views=True, stored_first=True)
        if loaded.weights is None:
            raise InputError(f"weights={os.fspath(weights)!r} is an architecture ({loaded.origin}), not weights")
        found, arrays, info = loaded.spec, loaded.weights, loaded.info
    _check_architecture(source.spec, found, weights)
    # the weights' head and input; the drop rates stay the named spec's (weights do not carry them)
    keep = {f: getattr(found, f) for f in FINE_TUNE_FIELDS if f not in DROP_FIELDS}
    return _pretrained(source.spec.replace(**keep), arrays, info, backend, overrides, dtype)


def _check_architecture(named: ResNetSpec, found: ResNetSpec, source: Any) -> None:
    diffs = [f"{f}={getattr(found, f)!r} (not {getattr(named, f)!r})" for f in named.to_dict(flat=True)
             if f not in _NOT_ARCHITECTURE and getattr(found, f) != getattr(named, f)]
    if diffs:
        label = "the weights given" if isinstance(source, Mapping) else os.fspath(source)
        raise InputError(f"{label} holds a {found.name} that is not a {named.name}: " + ", ".join(diffs)
                         + f". Build it as rc.build({label!r}) or pick the matching architecture")


def _architecture(spec: ResNetSpec, backend: str | None, dtype: str | None) -> Any:
    """A randomly initialised model: the plan, handed to the adapter (or to precision's builder)."""
    plan = make_plan(spec)
    if dtype is not None:
        from .precision import build_in_dtype

        return build_in_dtype(plan, get_backend(backend), dtype)
    return load_adapter(get_backend(backend)).build(plan)


def _pretrained(spec: ResNetSpec, weights: dict[str, np.ndarray], info: WeightsInfo | None, backend: str | None,
                overrides: Mapping[str, Any], dtype: str | None = None) -> Any:
    spec, weights, info = fine_tune(spec, weights, info, **overrides)
    adapter = load_adapter(get_backend(backend))
    plan = make_plan(spec)
    fresh_head = plan.head.fc is not None and f"{plan.head.fc.name}.weight" not in weights
    if dtype is not None:
        from .precision import build_in_dtype

        model = build_in_dtype(plan, get_backend(backend), dtype)
        adapter.set_weights(model, weights, strict=not fresh_head)
    elif fresh_head:  # the new head keeps the model's own initialisation
        model = adapter.build(plan)
        adapter.set_weights(model, weights, strict=False)
    else:  # the adapter's fast path: the model is created holding the weights, with no random initialisation
        model = adapter.build(plan, weights=weights)
    model.weights_info = info
    return model


def get_weights(model: Any) -> dict[str, np.ndarray]:
    """The canonical weights of ``model``: torchvision names, PyTorch layouts, numpy arrays.

    Args:
        model: A model built by :func:`build` (either backend).

    Returns:
        Canonical name to numpy array, in the spec's order; the same for the two backends.

    Raises:
        InputTypeError: ``model`` is not a resnet-core model.

    Example:
        Needs a framework:

        ```python
        import resnet_core as rc

        weights = rc.get_weights(rc.build("resnet18", backend="keras"))
        weights["conv1.weight"].shape  # (64, 3, 7, 7): PyTorch's layout, whatever the backend
        ```
    """
    return adapter_for(model).get_weights(model)


def set_weights(model: Any, weights: Mapping[str, Any], strict: bool = True) -> list[str]:
    """Load canonical ``weights`` into ``model``; return the names loaded.

    With ``strict``, one error lists every missing, unexpected and mis-shaped key. Shape mismatches
    raise even when not strict.

    Args:
        model: A model built by :func:`build` (either backend).
        weights: Canonical name to array (numpy or any framework's tensors), as :func:`get_weights` returns.
        strict: Require exactly the model's tensors.

    Returns:
        The canonical names loaded.

    Raises:
        InputTypeError: ``model`` is not a resnet-core model.
        WeightsMismatchError: A tensor has the wrong shape, or (with ``strict``) is missing or unexpected.

    Example:
        Needs PyTorch and Keras; the weights cross frameworks unchanged:

        ```python
        import resnet_core as rc

        torch_model = rc.build("resnet50", backend="torch")
        keras_model = rc.build("resnet50", backend="keras")
        rc.set_weights(keras_model, rc.get_weights(torch_model))
        ```
    """
    adapter = adapter_for(model)
    loaded = set(adapter.set_weights(model, weights, strict=strict))
    return [p.name for p in make_plan(adapter.spec_of(model)).params if p.name in loaded]


def spec_of(model: Any) -> ResNetSpec:
    """The spec a resnet_core model was built from; for a Keras model loaded by plain Keras, recovered
    from its layers.

    Args:
        model: A model built by :func:`build`, or a Keras model of resnet-core's loaded by Keras.

    Returns:
        The :class:`ResNetSpec` that rebuilds the architecture.

    Raises:
        InputTypeError: ``model`` is not a resnet-core model.

    Example:
        Needs a framework:

        ```python
        import resnet_core as rc

        rc.spec_of(rc.build("resnet18", backend="torch")) == rc.get_spec("resnet18")  # True
        ```
    """
    return adapter_for(model).spec_of(model)


def register_keras_objects(only_if_imported: bool = False) -> None:
    """Register resnet-core's own Keras layers, so ``keras.saving.load_model`` finds them (safe mode on).

    Networks of built-in layers need none of this: their ``.keras`` files load in any Keras. Importing
    ``resnet_core`` after ``keras`` calls this; after ``import resnet_core; import keras``, call it yourself.
    ``only_if_imported`` does nothing unless Keras is already imported (``import resnet_core`` imports no framework).

    Args:
        only_if_imported: Register only when Keras is already imported; never raise.

    Raises:
        MissingDependencyError: Keras (or a Keras the adapter supports) is not installed, unless
            ``only_if_imported``.

    Example:
        Needs Keras:

        ```python
        import resnet_core as rc
        import keras

        rc.register_keras_objects()  # resnet_core was imported before keras
        model = keras.saving.load_model("resnet50.keras")
        ```
    """
    if not only_if_imported:
        load_adapter("keras")  # the adapter's layers register themselves as it is imported
    elif "keras" in sys.modules:
        try:
            load_adapter("keras")
        except ImportError:  # a Keras the adapter cannot use (e.g. Keras 2): nothing to register
            pass


def weights_info_of(model: Any) -> WeightsInfo | None:
    """The trained-with record a model was built with (None for randomly initialised models)."""
    adapter_for(model)
    return getattr(model, "weights_info", None)
