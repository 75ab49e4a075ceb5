"""Whole Keras 3 models (``.keras``): written through Keras, read with zipfile and h5py alone.

A resnet-core model is saved as a plain functional ``keras.Model`` of built-in layers; its spec is
recovered from the file's config and weights (:mod:`resnet_core.io.keras_spec`), so no Keras is needed
to read one. Files of the former ``KerasResNet`` class, which stored the spec, are read too.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .formats import INFO_KEY, TensorInfo, WeightsFileError, info_from_metadata, legacy_info, spec_from_json
from .infer import InferenceError
from .keras_h5 import KerasH5Reader
from .keras_model import keras_model, without_tensorflow_probe
from .keras_spec import recover_spec

LEGACY_CLASS = ("resnet_core>KerasResNet", "KerasResNet")  # (registered name, class name) that stored the spec
WEIGHTS_MEMBER = "model.weights.h5"
# The trained-with record, an extra member of the archive: Keras's loader reads only the members it knows,
# so the file still loads anywhere, and the record stays beside the weights.
INFO_MEMBER = "resnet_core_weights_info.json"


class _Window(io.RawIOBase):
    """A read-only, seekable window on part of a file: an uncompressed zip member, read in place."""

    def __init__(self, path: Path, start: int, size: int):
        self._f = open(path, "rb")  # noqa: SIM115 - closed with the window
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


class KerasFileReader(KerasH5Reader):
    format_name = "keras"

    def __init__(self, path: Path):
        try:
            with zipfile.ZipFile(path) as zf:
                config = json.loads(zf.read("config.json"))
                meta = json.loads(zf.read("metadata.json")) if "metadata.json" in zf.namelist() else {}
                record = zf.read(INFO_MEMBER).decode("utf-8") if INFO_MEMBER in zf.namelist() else None
                member = zf.getinfo(WEIGHTS_MEMBER)
                fileobj: Any = (_Window(path, _data_offset(path, member), member.file_size)
                                if member.compress_type == zipfile.ZIP_STORED else io.BytesIO(zf.read(member)))
        except zipfile.BadZipFile as exc:
            raise WeightsFileError(f"{path} is not a .keras file (truncated or corrupt zip archive: {exc})") from None
        except KeyError as exc:
            raise WeightsFileError(f"{path} is not a .keras model file: it has no {exc.args[0]}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WeightsFileError(f"{path}: config.json is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("class_name") not in ("Functional", LEGACY_CLASS[1]):
            found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
            raise WeightsFileError(f"{path} holds a Keras {found!r} model, not a resnet-core (functional) model")
        super().__init__(path, fileobj)
        self.producer = f"Keras {meta.get('keras_version', '?')} model.save"
        model = config.get("config") or {}
        try:
            self.stored_spec = self._spec(path, config, model)
            self.stored_info = self._record(path, record, model)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _record(path: Path, record: str | None, model: dict[str, Any]) -> WeightsInfo | None:
        """The record member; in files of the former ``KerasResNet``, its config's record or spec preprocessing."""
        if record is None and isinstance(model.get("weights_info"), dict):
            record = json.dumps(model["weights_info"])
        return info_from_metadata({INFO_KEY: record}, path) if record is not None else legacy_info(model.get("spec"))

    def _spec(self, path: Path, config: dict[str, Any], model: dict[str, Any]) -> ResNetSpec:
        if (config.get("registered_name"), config.get("class_name")) == LEGACY_CLASS:
            if not isinstance(model.get("spec"), dict):
                raise WeightsFileError(f"{path}: the model config has no spec")
            return spec_from_json(json.dumps(model["spec"]), path)
        try:
            shapes = {name: info.shape for name, info in self.tensors(None).items()}
            return recover_spec(model, shapes, name=model.get("name"))
        except (InferenceError, WeightsFileError) as exc:
            raise WeightsFileError(f"{path} holds a Keras functional model that is not a resnet-core network "
                                   f"({exc})") from None


def _data_offset(path: Path, member: zipfile.ZipInfo) -> int:
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise WeightsFileError(f"{path} is a corrupt zip archive (bad local header for {member.filename})")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return member.header_offset + 30 + name_len + extra_len


def open_keras_reader(path: Path) -> KerasFileReader:
    return KerasFileReader(path)


def write_keras(path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo], get: Callable[[str], np.ndarray],
                progress: Callable[[int], None], info: WeightsInfo | None = None) -> None:
    """A whole model through Keras: a functional model of built-in layers that any Keras 3 loads; the
    trained-with record rides along as an extra archive member."""
    model = keras_model(spec, tensors, get, progress)
    with without_tensorflow_probe():
        model.save(path)
    if info is not None:
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(INFO_MEMBER, info.to_json())
