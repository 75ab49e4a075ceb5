"""Saving for the hub: a folder the peer's own loader reads, written by the peer's own saver, with a model card.

``timm`` (timm's ``save_for_hf``: config.json + model.safetensors, read by
``timm.create_model("hf-hub:...")``), ``transformers`` (``save_pretrained``, read by ``from_pretrained``)
or ``keras-hub`` (``save_to_preset``, read by ``from_preset``). The card states the source, the licence
and the parity measured while saving: the peer's logits against ours on the same random batch.
Uploading is ``huggingface_hub.upload_folder`` on the result (not wrapped here: nothing can be
uploaded from this project's test machines, so it would be untested).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import InputError, OutputExistsError
from ..peers import to_peer
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo

if TYPE_CHECKING:
    from ..io.api import LoadedWeights

LAYOUTS = ("timm", "transformers", "keras-hub")
CARD_IMAGES = (2, 65, 77)  # batch, height, width of the parity check written into the card


def _parts(model_or_weights: Any, spec: ResNetSpec | None, info: WeightsInfo | None
           ) -> tuple[ResNetSpec, dict[str, np.ndarray], WeightsInfo]:
    if isinstance(model_or_weights, tuple) and hasattr(model_or_weights, "spec"):  # read_weights' result
        loaded = cast("LoadedWeights", model_or_weights)
        return loaded.spec, dict(loaded.weights), info or loaded.info or WeightsInfo()
    if isinstance(model_or_weights, dict):
        if spec is None:
            raise InputError("save_pretrained of a weights dict needs spec=")
        return spec, model_or_weights, info or WeightsInfo()
    from ..api import get_weights, spec_of

    return spec_of(model_or_weights), get_weights(model_or_weights), \
        info or getattr(model_or_weights, "weights_info", None) or WeightsInfo()


def _parity(layout: str, peer: Any, spec: ResNetSpec, weights: dict[str, np.ndarray]) -> tuple[float, str]:
    """Max relative error of the peer's output against ours on one random batch, and what ran."""
    from ..api import build, set_weights
    from ..arrays import relative_error
    from ..random_weights import random_images

    batch, height, width = CARD_IMAGES
    images = random_images(batch, height, width, channels=spec.in_channels, seed=0)
    if layout == "keras-hub":
        import keras

        from ..peers.keras_hub_peer import logits

        x = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        ours = build(spec, backend="keras")
        set_weights(ours, weights)
        got = keras.ops.convert_to_numpy(ours(x, training=False))
        return relative_error(logits(peer, x), got), f"keras-hub vs resnet-core on Keras ({keras.backend.backend()})"
    import torch

    ours = build(spec, backend="torch").eval()
    set_weights(ours, weights)
    with torch.no_grad():
        x = torch.from_numpy(images)
        out = peer(x)
        theirs = (out.logits if hasattr(out, "logits") else getattr(out, "pooler_output", out)).flatten(1).numpy()
        return relative_error(theirs, ours(x).flatten(1).numpy()), f"{layout} vs resnet-core on torch"


def _card(layout: str, spec: ResNetSpec, info: WeightsInfo, error: float, what: str) -> str:
    batch, height, width = CARD_IMAGES
    tags = {"timm": "timm", "transformers": "transformers", "keras-hub": "keras-hub"}[layout]
    licence = info.licence or "unknown"
    return f"""---
library_name: {tags}
license: {licence if info.licence else 'other'}
tags:
- image-classification
- resnet-core
---
# {spec.name}

Saved by resnet-core in the {layout} layout (load it with {_loader(layout)}).

- Source: {info.source or 'not recorded'}
- Licence: {licence}
- Architecture: `{spec.to_json()}`
- Input: {info.preprocessing} normalisation{_normalisation(info)}{_size(info)}
- Classes: {len(info.class_names) if info.class_names else spec.num_classes if spec.include_top else 0}

## Parity

Measured while saving: {what}, a batch of {batch} random {height}x{width} images,
maximum relative error of the outputs {error:.2e} (max |difference| / max |reference|).
"""


def _loader(layout: str) -> str:
    return {"timm": '`timm.create_model("hf-hub:ORG/NAME", pretrained=True)`',
            "transformers": "`ResNetForImageClassification.from_pretrained`",
            "keras-hub": "`keras_hub.models.ImageClassifier.from_preset`"}[layout]


def _normalisation(info: WeightsInfo) -> str:
    if info.preprocessing != "torch":
        return ""
    mean, std = info.normalisation
    return f" (mean {list(mean)}, std {list(std)})"


def _size(info: WeightsInfo) -> str:
    parts = []
    if info.input_size:
        parts.append(f"size {info.input_size[1]}x{info.input_size[2]}")
    if info.crop_pct:
        parts.append(f"crop {info.crop_pct}")
    if info.interpolation:
        parts.append(info.interpolation)
    return f", {', '.join(parts)}" if parts else ""


def save_pretrained(model_or_weights: Any, folder: str | os.PathLike, layout: str = "timm",
                    spec: ResNetSpec | None = None, info: WeightsInfo | None = None, overwrite: bool = False) -> Path:
    """Write ``model_or_weights`` (a resnet_core model, ``read_weights``'s result, or canonical weights with
    ``spec``) as a hub folder in ``layout``; returns the folder. Written beside it first and renamed, so a
    failure leaves nothing; an existing folder is replaced only with ``overwrite``.

    The folder holds the layout library's own files and a model card
    ``README.md`` with the preprocessing and the measured agreement of the peer's output with ours.

    Args:
        model_or_weights: A model built by resnet_core, the result of :func:`resnet_core.read_weights`, or
            canonical name to array (then ``spec`` is required).
        folder: The output folder.
        layout: ``"timm"``, ``"transformers"`` or ``"keras-hub"``: the library that will load it.
        spec: The architecture of a plain weights mapping.
        info: The trained-with record (default: the one the model or file carries).
        overwrite: Replace an existing folder.

    Returns:
        ``folder``, as a :class:`pathlib.Path`.

    Raises:
        InputError: An unknown ``layout``, or a weights mapping without ``spec``.
        OutputExistsError: ``folder`` exists and ``overwrite`` is false.
        PeerError: The layout's library cannot express the spec.
        MissingDependencyError: The layout's library is not installed.

    Example:
        The layout is checked first:

        >>> import resnet_core as rc
        >>> rc.save_pretrained({}, "out", layout="onnx")
        Traceback (most recent call last):
        ...
        resnet_core.errors.InputError: Unknown layout 'onnx'. Expected one of ('timm', 'transformers', 'keras-hub')

        With timm installed:

        ```python
        model = rc.build("resnet50", backend="torch")
        rc.save_pretrained(model, "my-resnet50", layout="timm")
        # later: timm.create_model("hf-hub:ORG/my-resnet50", pretrained=True)
        ```
    """
    if layout not in LAYOUTS:
        raise InputError(f"Unknown layout {layout!r}. Expected one of {LAYOUTS}")
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputExistsError(f"{folder} exists; pass overwrite=True to replace it")
    spec, weights, info = _parts(model_or_weights, spec, info)
    peer_name = {"timm": "timm", "transformers": "transformers", "keras-hub": "keras-hub"}[layout]
    peer = to_peer(spec, weights, peer_name, info=info)
    error, what = _parity(layout, peer, spec, weights)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if layout == "timm":
            import timm

            timm.models.save_for_hf(peer, tmp, safe_serialization=True)
        elif layout == "transformers":
            peer.save_pretrained(tmp)
        else:
            peer.save_to_preset(str(tmp))
        (tmp / "README.md").write_text(_card(layout, spec, info, error, what), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
