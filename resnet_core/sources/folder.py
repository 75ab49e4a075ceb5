"""A local folder in one of the three hub layouts, read by the peer's own loader.

- timm: ``config.json`` with ``architecture`` and ``pretrained_cfg``, ``model.safetensors`` or
  ``pytorch_model.bin`` (``timm.create_model("local-dir:...", pretrained=True)``; without timm, an
  ``architecture`` that names one of our presets is read directly, timm's names being torchvision's);
- transformers: ``config.json`` of a ``ResNetConfig`` and ``model.safetensors`` (``from_pretrained``);
- keras-hub: ``config.json``, ``model.weights.h5``, ``metadata.json`` (``from_preset``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ..errors import NotAFileError
from ..io.api import LoadedWeights, read_weights
from ..peers import PeerError, from_peer, peer_info
from ..presets import get_spec, list_specs
from ..weights_info import WeightsInfo, from_timm_cfg
from ._errors import SourceError

LAYOUTS = ("timm", "transformers", "keras-hub")
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TIMM_MODULES = ("timm.models.resnet", "timm.models.resnetv2")


def has_timm() -> bool:
    return importlib.util.find_spec("timm") is not None


def _config(folder: Path, label: str) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise NotAFileError(f"{label!r} is a directory, not a weights file, and no model folder (it has no "
                                "config.json: a timm, transformers or keras-hub folder holds one beside its weights)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(label, f"{path} is not valid JSON ({exc})", "Delete the file (or the cached "
                          "snapshot) and fetch it again") from None
    if not isinstance(config, dict):
        raise SourceError(label, f"{path} is not a JSON object")
    return config


def layout_of(config: dict[str, Any], folder: Path) -> str:
    """Which hub layout ``config.json`` belongs to."""
    if "architecture" in config:
        return "timm"
    if "model_type" in config:
        return "transformers"
    if "registered_name" in config and str(config["registered_name"]).startswith("keras_hub>"):
        return "keras-hub"
    return ""


def load_folder(folder: Path, label: str) -> LoadedWeights:
    """Spec, canonical weights and trained-with record of a model folder (``label`` names it in errors)."""
    config = _config(folder, label)
    layout = layout_of(config, folder)
    if layout == "timm":
        return _timm(folder, config, label)
    if layout == "transformers":
        return _transformers(folder, config, label)
    if layout == "keras-hub":
        return _keras_hub(folder, config, label)
    raise SourceError(label, f"{folder / 'config.json'} is none of the layouts resnet-core reads "
                             f"({', '.join(LAYOUTS)})")


def _peer_result(model: Any, label: str, what: str, info: WeightsInfo | None = None) -> LoadedWeights:
    try:
        spec, weights = from_peer(model)
    except (PeerError, TypeError) as exc:
        raise SourceError(label, f"{what} is not a ResNet resnet-core can express: {exc}") from None
    return LoadedWeights(spec, weights, info if info is not None else peer_info(model))


def _timm(folder: Path, config: dict[str, Any], label: str) -> LoadedWeights:
    arch = str(config["architecture"])
    cfg = {**(config.get("pretrained_cfg") or {}), "architecture": arch}
    for key in ("label_names", "num_classes"):
        if key in config:
            cfg[key] = config[key]
    source = label if label.startswith("hf-hub:") else f"timm:{arch} from {folder}"
    info = from_timm_cfg(cfg, source=source)
    if not has_timm():
        return _timm_without_timm(folder, config, arch, info, label)
    import timm

    check_timm_architecture(arch, label)
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(label, f"timm could not load {folder} ({type(exc).__name__}: {exc})",
                          "The download may be incomplete or corrupt: delete the cached snapshot and fetch it "
                          "again") from None
    return _peer_result(model.eval(), label, f"timm's {arch}", info)


def check_timm_architecture(arch: str, label: str) -> None:
    """Refuse, by name, a timm architecture that is no ResNet (asks timm when installed, else our presets)."""
    if not has_timm():
        if arch not in list_specs():
            raise SourceError(label, f"architecture {arch!r} is no resnet-core preset", "Install timm (pip "
                              "install timm) so resnet-core can ask timm what it builds")
        return
    import timm

    if not timm.is_model(arch):
        raise SourceError(label, f"timm has no architecture {arch!r}", "Upgrade timm, or check the repo name")
    module = timm.models.model_entrypoint(arch).__module__
    if module not in TIMM_MODULES:
        raise SourceError(label, f"architecture {arch!r} ({module}) is not a ResNet resnet-core can express "
                          "(it reads timm's ResNet and ResNetV2)")


def _timm_without_timm(folder: Path, config: dict[str, Any], arch: str, info: WeightsInfo,
                       label: str) -> LoadedWeights:
    """timm names ResNet tensors as torchvision does: a preset of the same name reads them directly."""
    check_timm_architecture(arch, label)
    args = dict(config.get("model_args") or {})
    odd = sorted(set(args) - {"num_classes", "in_chans", "global_pool"})
    if odd:
        raise SourceError(label, f"model_args {odd} change timm's {arch}", "Install timm (pip install timm) "
                          "to read them")
    classes = int(args.get("num_classes", config.get("num_classes", get_spec(arch).num_classes)))
    pool = {"avg": "avg", "max": "max", "": None}.get(args.get("global_pool", "avg"), "avg")
    spec = get_spec(arch).replace(num_classes=classes, include_top=classes > 0, pooling=None if classes else pool,
                                  in_channels=int(args.get("in_chans", 3)))
    weights = next((folder / n for n in TIMM_WEIGHTS if (folder / n).is_file()), None)
    if weights is None:
        raise SourceError(label, f"no {' or '.join(TIMM_WEIGHTS)} in {folder}")
    if weights.suffix == ".safetensors":
        return LoadedWeights(spec, read_weights(weights, spec).weights, info)
    from ..io.torch_io import open_reader  # pytorch_model.bin is a torch.save'd state_dict, as a .pth is
    from ..mapping import check_weights
    from ..plan import make_plan

    with open_reader(weights) as reader:
        names = check_weights(make_plan(spec), reader.tensors(spec), strict=True)
        return LoadedWeights(spec, {n: reader.read(n) for n in names}, info)


def _transformers(folder: Path, config: dict[str, Any], label: str) -> LoadedWeights:
    if config.get("model_type") != "resnet":
        raise SourceError(label, f"model_type={config.get('model_type')!r} is not transformers' ResNet "
                          "(resnet-core reads model_type='resnet')")
    import transformers

    classifier = "ResNetForImageClassification" in (config.get("architectures") or [])
    cls = transformers.ResNetForImageClassification if classifier else transformers.ResNetModel
    try:
        model = cls.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise SourceError(label, f"transformers could not load {folder} ({exc})", "The download may be "
                          "incomplete or corrupt: delete the cached snapshot and fetch it again") from None
    info = peer_info(model).replace(source=label, **_image_processor(folder))
    return _peer_result(model.eval(), label, "this transformers model", info)


def _image_processor(folder: Path) -> dict[str, Any]:
    """Mean, std, crop fraction and size from transformers' preprocessor_config.json, when present."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    if cfg.get("image_mean") and cfg.get("image_std"):
        out.update(mean=cfg["image_mean"], std=cfg["image_std"])
    if cfg.get("crop_pct"):
        out["crop_pct"] = cfg["crop_pct"]
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(cfg.get("resample"))
    if resample:
        out["interpolation"] = resample
    return out


def _keras_hub(folder: Path, config: dict[str, Any], label: str) -> LoadedWeights:
    import keras_hub

    task = (folder / "task.json").is_file()
    try:
        model = (keras_hub.models.ImageClassifier if task else keras_hub.models.Backbone).from_preset(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(label, f"keras-hub could not load {folder} ({type(exc).__name__}: {exc})",
                          "The download may be incomplete or corrupt: delete the cached snapshot and fetch it "
                          "again") from None
    info = peer_info(model) if task else WeightsInfo()
    return _peer_result(model, label, f"keras-hub's {config.get('class_name')}", info.replace(source=label))
