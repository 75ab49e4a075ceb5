"""Find the trained-with record of whatever the user holds, and use it on the way out (class names)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import InputError
from .spec import ResNetSpec
from .weights_info import WeightsInfo, preset_info


def _from_source(source: str | os.PathLike) -> WeightsInfo:
    """The record a source stores, else the one its spec's preset implies (see :func:`resnet_core.sources.resolve`)."""
    from .sources import resolve

    found = resolve(source, load=False)
    if found.info is not None:
        return found.info
    if found.spec_source == "inferred":
        raise InputError(f"{os.fspath(source)} stores neither a trained-with record nor a spec, so its preprocessing "
                         "is unknown; pass a WeightsInfo or a preset name")
    return preset_info(found.spec.name)


def info_of(source: Any) -> WeightsInfo:
    """The trained-with record of ``source``: a WeightsInfo, a resnet_core model, ``read_weights``'s result,
    a spec or preset name (its usual weights' record), a weights file or spec ``.json``.

    Args:
        source: A :class:`WeightsInfo` (returned as is), a model built by resnet_core, the result of
            :func:`resnet_core.read_weights`, a :class:`ResNetSpec`, or any source :func:`resnet_core.build`
            takes: a preset name, a spec ``.json``, a weights file, a model folder, a hub name.

    Returns:
        The record: the one stored with the weights when there is one, else the one the preset's usual
        weights imply.

    Raises:
        UnknownNameError: A bare name that is no preset.
        MissingFileError: A path that does not exist.
        InputError: A weights file that stores neither a record nor a spec.
        InputTypeError: Anything else that is not one of our models.

    Example:
        >>> import resnet_core as rc
        >>> rc.info_of("resnet50").preprocessing, rc.info_of("keras_resnet50").preprocessing
        ('torch', 'caffe')
        >>> rc.info_of("resnet50").normalisation
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """
    if isinstance(source, WeightsInfo):
        return source
    if isinstance(source, ResNetSpec):
        return preset_info(source.name)
    if isinstance(source, tuple) and hasattr(source, "info") and hasattr(source, "spec"):
        return source.info or preset_info(source.spec.name)
    if isinstance(source, (str, os.PathLike)):
        return _from_source(source)
    from .backends import adapter_for

    adapter_for(source)  # TypeError for anything that is not our model
    return getattr(source, "weights_info", None) or preset_info(source.spec.name)


def decode_predictions(logits: Any, source: Any, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """The ``top`` classes of each row of ``logits``: ``(index, class name, softmax probability)``, best first.

    ``source`` is anything :func:`info_of` takes; its record must carry class names (timm's ``label_names``,
    transformers' ``id2label``, torchvision's categories).

    Args:
        logits: Array-like of shape ``(N, classes)``, or ``(classes,)`` for one image.
        source: Anything :func:`info_of` takes.
        top: How many classes to return per row.

    Returns:
        One list per row of ``logits``: ``(index, class name, probability)`` tuples, most likely first.

    Raises:
        InputError: The record carries no class names, ``logits`` does not have one column per class
            name, or ``top`` is not a positive integer.

    Example:
        >>> import resnet_core as rc
        >>> info = rc.WeightsInfo(class_names=("cat", "dog", "fox"))
        >>> for index, name, probability in rc.decode_predictions([1.0, 3.0, 2.0], info, top=2)[0]:
        ...     print(index, name, round(probability, 3))
        1 dog 0.665
        2 fox 0.245
    """
    info = info_of(source)
    if not info.class_names:
        raise InputError("These weights carry no class names (their source does not record them); "
                         "decode the indices with your own label list")
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != len(info.class_names):
        raise InputError(f"Expected logits of shape (N, {len(info.class_names)}) (one per class name). "
                         f"Received shape {np.shape(logits)}")
    if not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer. Received: top={top!r}")
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    order = np.argsort(-x, axis=1, kind="stable")[:, :top]
    return [[(int(i), info.class_names[i], float(row_p[i])) for i in row] for row, row_p in zip(order, p, strict=True)]
