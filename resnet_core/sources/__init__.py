"""Pretrained weights by name: one resolver for ``rc.build``, ``rc.read_weights`` and the CLI.

A source is ``hf-hub:ORG/NAME[@REVISION]`` (through huggingface_hub: its cache, ``HF_HOME``,
``HF_HUB_OFFLINE``, progress bars), ``torchvision:NAME.TAG`` (torchvision's weights registry and the
torch hub cache under ``TORCH_HOME``, hash-checked), a local folder in one of the hub layouts (timm,
transformers, keras-hub) or a weights file of any format :mod:`resnet_core.io` reads. Hub layouts are
read by the peer's own loader and converted through its importer, so no name table is written twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io.api import LoadedWeights, read_for_build, read_weights
from ..spec import ResNetSpec
from ._errors import SourceError

SCHEMES = ("hf-hub:", "torchvision:")

__all__ = ["SCHEMES", "SourceError", "is_source", "load_source"]


def is_source(value: Any) -> bool:
    """True for a hub name, a folder, or an existing file (what :func:`load_source` takes); not a preset name."""
    if isinstance(value, ResNetSpec):
        return False
    if isinstance(value, str) and value.startswith(SCHEMES):
        return True
    return isinstance(value, (str, os.PathLike)) and os.path.exists(value)


def load_source(source: str | os.PathLike, spec: str | ResNetSpec | None = None, *,
                views: bool = False) -> LoadedWeights:
    """``(spec, weights)`` and ``.info`` (the trained-with record) of ``source``: canonical numpy weights.

    ``spec`` is only for weight files that store none and whose architecture cannot be inferred.
    ``views``: a weights file's arrays may be read-only views of it (for callers that copy them anyway).
    Raises :class:`SourceError` (one line naming the source and what to do) when it cannot be fetched.
    """
    text = os.fspath(source)
    if text.startswith("hf-hub:"):
        from .hub import load_hf_hub

        return load_hf_hub(text)
    if text.startswith("torchvision:"):
        from .torchvision_source import load_torchvision

        return load_torchvision(text)
    path = Path(text)
    if path.is_dir():
        from .folder import load_folder

        return load_folder(path, text)
    return read_for_build(path, spec) if views else read_weights(path, spec)
