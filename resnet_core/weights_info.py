"""What the weights were trained with: the record that travels beside them, not in the architecture.

Input size, resize interpolation, crop fraction, normalisation, class names, source and licence are
facts about one set of weights (two checkpoints of one architecture differ in them), so they live
here, in file metadata and hub configs, never in :class:`~resnet_core.spec.ResNetSpec`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ResNetCoreError

# "torch": RGB on [0, 1], then (x - mean) / std; "caffe": BGR on [0, 255] minus the ImageNet mean
# (keras.applications v1); "tf": x / 127.5 - 1 (keras.applications V2, Inception).
PREPROCESSING_MODES = ("torch", "caffe", "tf")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = INCEPTION_STD = (0.5, 0.5, 0.5)


class WeightsInfoError(ResNetCoreError, ValueError):
    """A trained-with record holds a value no preprocessing can use."""


def _floats(name: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return (float(value),)
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise WeightsInfoError(f"Invalid WeightsInfo.{name}: expected a sequence of numbers. Received: {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class WeightsInfo:
    """How the weights expect their input and what their outputs mean.

    ``mean``/``std`` (RGB, on [0, 1] inputs) apply to the "torch" mode; None means ImageNet's.
    ``input_size`` is (channels, height, width) as timm writes it; ``crop_pct`` the centre-crop
    fraction; ``class_names`` the label of each logit, in order.

    Raises:
        WeightsInfoError: A field holds a value no preprocessing can use (checked when the record is built).

    Examples:
        >>> from resnet_core import WeightsInfo
        >>> info = WeightsInfo(preprocessing="torch", input_size=(3, 224, 224), crop_pct=0.875)
        >>> info.normalisation  # None mean/std: ImageNet's
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        >>> WeightsInfo.from_json(info.to_json()) == info
        True
        >>> WeightsInfo(preprocessing="yolo")
        Traceback (most recent call last):
        ...
        resnet_core.weights_info.WeightsInfoError: ...
    """

    preprocessing: str = "torch"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    class_names: tuple[str, ...] | None = None
    source: str | None = None
    licence: str | None = None

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING_MODES:
            raise WeightsInfoError(f"Invalid WeightsInfo.preprocessing: expected one of {PREPROCESSING_MODES}. "
                                   f"Received: preprocessing={self.preprocessing!r}")
        for name in ("mean", "std"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        if self.std is not None and any(s <= 0 for s in self.std):
            raise WeightsInfoError(f"Invalid WeightsInfo.std: expected positive numbers. Received: std={self.std!r}")
        if self.input_size is not None:
            object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.crop_pct is not None:
            object.__setattr__(self, "crop_pct", float(self.crop_pct))

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) on [0, 1] RGB inputs for the "torch" mode."""
        return self.mean or IMAGENET_MEAN, self.std or IMAGENET_STD

    def replace(self, **changes: Any) -> WeightsInfo:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that are set (plus ``preprocessing``), JSON-ready."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None or f.name == "preprocessing":
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WeightsInfoError(f"Unknown WeightsInfo field(s) {unknown}. Known fields: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> WeightsInfo:
        return cls.from_dict(json.loads(text))


def mode_of(mean: Sequence[float] | None, std: Sequence[float] | None) -> str:
    """'tf' when mean/std are Inception's (x / 127.5 - 1 is the same map), else 'torch'."""
    if mean is not None and std is not None and len(mean) == len(std) == 3 and \
            all(abs(m - 0.5) < 1e-6 for m in mean) and all(abs(s - 0.5) < 1e-6 for s in std):
        return "tf"
    return "torch"


def from_timm_cfg(cfg: Mapping[str, Any], source: str | None = None) -> WeightsInfo:
    """The record in a timm ``pretrained_cfg`` (a live model's, or config.json's)."""
    mean, std = cfg.get("mean"), cfg.get("std")
    mode = mode_of(mean, std)
    names = cfg.get("label_names")
    return WeightsInfo(
        preprocessing=mode, mean=None if mode == "tf" else mean, std=None if mode == "tf" else std,
        input_size=cfg.get("input_size"), interpolation=cfg.get("interpolation"), crop_pct=cfg.get("crop_pct"),
        class_names=tuple(names) if names else None, source=source or _timm_source(cfg),
        licence=cfg.get("license"),
    )


def _timm_source(cfg: Mapping[str, Any]) -> str | None:
    hub = cfg.get("hf_hub_id")
    if hub:
        return f"hf-hub:{hub}"
    arch, tag = cfg.get("architecture"), cfg.get("tag")
    return f"timm:{arch}.{tag}" if arch and tag else None


def to_timm_cfg(info: WeightsInfo) -> dict[str, Any]:
    """The ``pretrained_cfg`` entries timm reads for ``info`` ("caffe" has no timm equivalent: refused)."""
    if info.preprocessing == "caffe":
        raise WeightsInfoError("preprocessing='caffe' (BGR on [0, 255]) has no timm pretrained_cfg equivalent")
    mean, std = (INCEPTION_MEAN, INCEPTION_STD) if info.preprocessing == "tf" else info.normalisation
    cfg: dict[str, Any] = {"mean": tuple(mean), "std": tuple(std)}
    for key, value in (("input_size", info.input_size), ("interpolation", info.interpolation),
                       ("crop_pct", info.crop_pct), ("license", info.licence), ("label_names", info.class_names)):
        if value is not None:
            cfg[key] = value
    return cfg


def from_id2label(id2label: Mapping[Any, str] | None) -> tuple[str, ...] | None:
    """Class names from transformers' ``id2label`` (keys may be strings); None for the default LABEL_i."""
    if not id2label:
        return None
    names = tuple(id2label[k] for k in sorted(id2label, key=int))
    if all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


# Presets whose only sensible weights were trained with another normalisation than torchvision's.
_PRESET_MODES = {
    "keras_resnet50": "caffe", "keras_resnet101": "caffe", "keras_resnet152": "caffe",
    "keras_resnet50v2": "tf", "keras_resnet101v2": "tf", "keras_resnet152v2": "tf",
    "resnetv2_50": "tf", "resnetv2_101": "tf",
    "resnetv2_50d_gn": "tf", "resnetv2_50d_evos": "tf", "resnetv2_50d_frn": "tf",  # timm's cfgs: Inception mean/std
    **{f"resnetv2_{d}x{f}_bit": "tf" for d, f in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4))},
}


def preset_info(name: str) -> WeightsInfo:
    """The record a preset's usual weights imply (keras.applications v1 'caffe', V2 'tf'; else 'torch')."""
    return WeightsInfo(preprocessing=_PRESET_MODES.get(name, "torch"))


def legacy_preprocessing(data: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Split a stored spec dict written before the record existed: (spec fields, its ``preprocessing`` or None)."""
    data = dict(data)
    return data, data.pop("preprocessing", None)
