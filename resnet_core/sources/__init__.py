"""Pretrained weights and architectures by name: what an argument means, decided once (:mod:`.resolve`).

A source is a preset or registered name, a :class:`~resnet_core.spec.ResNetSpec`, a spec ``.json``, a weights
file of any format :mod:`resnet_core.io` reads, an ``.npz`` of canonical arrays, a model folder (timm,
transformers or keras-hub layout, as ``rc.save_pretrained`` writes), ``hf-hub:ORG/NAME[@REVISION]`` (through
huggingface_hub: its cache, ``HF_HOME``, ``HF_HUB_OFFLINE``, progress bars), ``torchvision:NAME.TAG``
(torchvision's weights registry and the torch hub cache under ``TORCH_HOME``, hash-checked) or timm's
``local-dir:PATH``. Hub layouts are read by the peer's own loader and converted through its importer, so no
name table is written twice.
"""

from __future__ import annotations

from ._errors import SourceError
from .resolve import SCHEMES, Resolved, architecture, kind_of, resolve
from .weights import convert, describe, float32, read_float32, read_weights

__all__ = ["SCHEMES", "Resolved", "SourceError", "architecture", "convert", "describe", "float32", "kind_of",
           "read_float32", "read_weights", "resolve"]
