"""``torchvision:NAME.TAG`` through torchvision's weights registry and the torch hub cache (TORCH_HOME).

The file name carries the first hex digits of its SHA-256 (torch hub's convention); a fresh download
is checked by torch hub itself (``check_hash=True``), and a file already in the cache is checked here
against the same digits, so a truncated or tampered cache entry is refused instead of loaded.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..io.api import LoadedWeights
from ..peers import from_peer
from ..weights_info import WeightsInfo
from ._errors import SourceError

HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX


def _weights(source: str):
    import torchvision

    body = source[len("torchvision:"):]
    name, _, tag = body.partition(".")
    if not name or not tag:
        raise SourceError(source, "expected torchvision:NAME.TAG, e.g. torchvision:resnet50.IMAGENET1K_V2")
    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise SourceError(source, f"torchvision has no model {name!r}") from None
    if tag == "DEFAULT":
        return name, enum.DEFAULT
    try:
        return name, enum[tag]
    except KeyError:
        raise SourceError(source, f"{enum.__name__} has no tag {tag!r}",
                          f"Known tags: {', '.join([*enum.__members__, 'DEFAULT'])}") from None


def cached_file(url: str) -> Path:
    """Where torch hub keeps ``url`` ($TORCH_HOME/hub/checkpoints/<file name>)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def check_cached_hash(path: Path, source: str) -> None:
    match = HASH_PREFIX.search(path.name)
    if match is None or not match.group(1):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise SourceError(source, f"the cached {path} does not match its hash prefix {match.group(1)} (truncated "
                          "or corrupt)", "Delete it and fetch it again")


def info_from_weights(weights, source: str) -> WeightsInfo:
    """The record in a torchvision Weights entry: categories, transforms (resize, crop, mean/std, interpolation)."""
    transforms = weights.transforms()
    crop, resize = transforms.crop_size[0], transforms.resize_size[0]
    return WeightsInfo(
        mean=transforms.mean, std=transforms.std, input_size=(3, crop, crop),
        interpolation=transforms.interpolation.value, crop_pct=round(crop / resize, 4),
        class_names=weights.meta.get("categories"), source=source, licence="BSD-3-Clause (torchvision)",
    )


def load_torchvision(source: str) -> LoadedWeights:
    import torchvision

    name, weights = _weights(source)
    path = cached_file(weights.url)
    if path.is_file():
        check_cached_hash(path, source)
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except RuntimeError as exc:  # torch hub's hash mismatch or a torn file
        raise SourceError(source, f"torch hub could not load {path} ({exc})",
                          "Delete it and fetch it again") from None
    except OSError as exc:  # no network (URLError is an OSError), disk full...
        raise SourceError(source, f"{path.name} is not in the torch hub cache ({path.parent}) and could not be "
                          f"downloaded ({exc})", "Fetch it once online, or set TORCH_HOME to a cache that holds "
                          "it") from None
    model = torchvision.models.get_model(name, weights=None, num_classes=len(weights.meta["categories"]))
    model.load_state_dict(state)
    spec, canonical = from_peer(model.eval())
    return LoadedWeights(spec, canonical, info_from_weights(weights, source))
