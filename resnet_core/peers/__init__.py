"""Importers and exporters for peer implementations: torchvision, timm, transformers, keras-hub, keras.applications.

``from_peer(model)`` infers the spec from a live peer model and returns its canonical weights;
``to_peer(spec, weights, peer)`` builds the peer's own model with them. Each peer module holds one
declarative name table used in both directions, and imports its framework only when called.

Conventions of inferred specs: a headless model has ``num_classes=0`` (nothing records a class count
without a classifier); ``zero_init_residual`` is False (an initialisation choice no live model keeps);
``se_ratio`` is
the first of 1/16, 1/1 ... 1/64 that reproduces the SE widths (1/16 without SE); the name is a
preset's when the spec equals one. What the weights were trained with is not architecture:
:func:`peer_info` reads it (timm's ``pretrained_cfg``, transformers' ``id2label``, a keras-hub image
converter, keras.applications' 'caffe'/'tf'), and ``to_peer(..., info=...)`` writes it back.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..mapping import check_weights
from ..name_tables import PeerError
from ..plan import make_plan
from ..presets import get_spec
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo

# peer name -> module; from_peer asks them in this order (keras-hub before keras.applications, which
# takes any keras.Model and refuses what is not its own).
PEERS = {
    "torchvision": "resnet_core.peers.torchvision_peer",
    "timm": "resnet_core.peers.timm_peer",
    "transformers": "resnet_core.peers.hf_peer",
    "keras-hub": "resnet_core.peers.keras_hub_peer",
    "keras.applications": "resnet_core.peers.keras_applications_peer",
}

__all__ = ["PEERS", "PeerError", "from_peer", "peer_info", "peer_of", "to_peer"]


def _module(peer: str) -> ModuleType:
    return importlib.import_module(PEERS[peer])


def peer_of(model: object) -> str:
    """The peer a live model comes from; raises TypeError for anything else."""
    from ..backends import adapter_for

    try:
        adapter_for(model)
    except TypeError:
        pass
    else:
        raise InputTypeError("This is already a resnet_core model: use resnet_core.spec_of and resnet_core.get_weights")
    for peer in PEERS:
        if _module(peer).accepts(model):
            return peer
    raise InputTypeError(f"Not a model from a known peer ({', '.join(PEERS)}). Received: {type(model)!r}")


def from_peer(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    """The spec of a live peer model and its canonical weights (numpy, PyTorch layouts).

    Raises :class:`PeerError` naming whatever the model uses that ResNetSpec cannot express, and
    listing any of its tensors the inferred spec leaves unused.

    Args:
        model: A live model of a peer: torchvision, timm, transformers, keras-hub or keras.applications.

    Returns:
        ``(spec, weights)``: the inferred :class:`ResNetSpec` (a preset's name when it equals one) and
        canonical name to numpy array.

    Raises:
        PeerError: The model uses something ResNetSpec cannot express, or leaves tensors unused.
        InputTypeError: ``model`` is not a known peer's (or is already a resnet-core model).

    Example:
        Needs torchvision:

        ```python
        import torchvision
        import resnet_core as rc

        spec, weights = rc.from_peer(torchvision.models.resnet50(weights="IMAGENET1K_V2"))
        spec.name  # 'resnet50'
        keras_model = rc.build(spec, backend="keras", weights=weights)
        ```
    """
    return _module(peer_of(model)).from_model(model)


def peer_info(model: Any) -> WeightsInfo:
    """What a live peer model's weights were trained with, as far as the model records it."""
    return _module(peer_of(model)).info_of(model)


def to_peer(spec: str | ResNetSpec, weights: Mapping[str, Any], peer: str, info: WeightsInfo | None = None,
            **options: Any) -> Any:
    """The peer's own model of ``spec`` holding ``weights`` (torch peers in eval mode).

    ``info`` (a :class:`WeightsInfo`) goes where the peer keeps it (timm's ``pretrained_cfg``, a keras-hub
    image converter, transformers' ``id2label``). ``options`` reach the peer's constructor where it takes
    any (keras.applications: ``input_shape``, ``classifier_activation``; timm: ``model_class="ResNet"`` or
    ``"ResNetV2"``, by default the class that builds the spec). Specs the peer cannot build exactly are
    refused, naming the fields, so ``from_peer(to_peer(spec, w, peer))`` gives back ``spec`` and ``w`` bit
    for bit (up to the conventions above: ``num_classes`` of a headless spec, ``zero_init_residual``,
    ``se_ratio``, the name).

    Args:
        spec: A preset name or a :class:`ResNetSpec`.
        weights: Canonical name to array, exactly the spec's tensors.
        peer: One of ``"torchvision"``, ``"timm"``, ``"transformers"``, ``"keras-hub"``, ``"keras.applications"``.
        info: The trained-with record to store where the peer keeps it.
        **options: Passed to the peer's constructor where it takes any.

    Returns:
        The peer's model holding ``weights``.

    Raises:
        InputError: ``peer`` is not a known peer.
        UnknownNameError: ``spec`` names no preset.
        WeightsMismatchError: ``weights`` are not exactly the spec's tensors.
        PeerError: The peer cannot build ``spec`` exactly; the message names the fields.
        MissingDependencyError: The peer's package is not installed.

    Example:
        Peers are checked before any framework is imported:

        >>> import resnet_core as rc
        >>> rc.to_peer("resnet18", {}, "caffe")
        Traceback (most recent call last):
        ...
        resnet_core.errors.InputError: Unknown peer 'caffe'. Known peers: torchvision, timm, transformers, ...

        With timm installed:

        ```python
        from resnet_core.random_weights import random_weights

        model = rc.to_peer("resnet50", random_weights("resnet50"), "timm")  # a timm.models.ResNet
        ```
    """
    if peer not in PEERS:
        raise InputError(f"Unknown peer {peer!r}. Known peers: {', '.join(PEERS)}")
    resolved = get_spec(spec)
    check_weights(make_plan(resolved), weights, strict=True)
    return _module(peer).to_model(resolved, weights, info=info, **options)
