"""Whole Keras 3 models (``.keras``): written through Keras, read with zipfile and h5py alone.

A resnet-core model is saved as a plain functional ``keras.Model`` of built-in layers; its spec is
recovered from the file's config and weights (:mod:`resnet_core.io.keras_spec`), so no Keras is needed
to read one. Files of the former ``KerasResNet`` class, which stored the spec, are read too.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tempfile
import zipfile
import zlib
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
# What a member may inflate to, checked on the zip header before it is read, and again while reading (a header
# can lie). config.json of the deepest preset (resnet200, ~700 layers) is under 1 MB.
CONFIG_LIMIT = 8 * 2**20
TEXT_LIMIT = 2**20  # metadata.json and the trained-with record: a few hundred bytes
# A deflated weights member: float weights barely compress (about 1.1x); a member inflating more than this is
# a bomb. Small members may hold mostly zeros, so the ratio applies only above the floor.
WEIGHTS_RATIO_LIMIT, WEIGHTS_RATIO_FLOOR = 100, 64 * 2**20
_CHUNK = 2**20


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
                config = json.loads(_read_bounded(path, zf, "config.json", CONFIG_LIMIT))
                names = zf.namelist()
                meta = json.loads(_read_bounded(path, zf, "metadata.json", TEXT_LIMIT)) if "metadata.json" in names \
                    else {}
                record = _read_bounded(path, zf, INFO_MEMBER, TEXT_LIMIT).decode("utf-8") if INFO_MEMBER in names \
                    else None
                member = zf.getinfo(WEIGHTS_MEMBER)
                fileobj = _weights_member(path, zf, member)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise WeightsFileError(f"{path} is not a .keras file (truncated or corrupt zip archive: {exc})") from None
        except KeyError as exc:
            raise WeightsFileError(f"{path} is not a .keras model file: it has no {exc.args[0]}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WeightsFileError(f"{path}: config.json is not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("class_name") not in ("Functional", LEGACY_CLASS[1]):
            found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
            raise WeightsFileError(f"{path} holds a Keras {found!r} model, not a resnet-core (functional) model")
        super().__init__(path, fileobj)
        if member.compress_type != zipfile.ZIP_STORED:
            self._check_declared(path, member)
        self.producer = f"Keras {meta.get('keras_version', '?')} model.save"
        model = config.get("config") or {}
        try:
            self.stored_spec = self._spec(path, config, model)
            self.stored_info = self._record(path, record, model)
        except BaseException:
            self.close()
            raise

    def _check_declared(self, path: Path, member: zipfile.ZipInfo) -> None:
        """An inflated weights member holds the datasets it declares and HDF5's bookkeeping (about 1.3 KB
        per layer group, measured on Keras's files): anything beyond that is padding a bomb is made of."""
        declared, objects = self.declared_bytes()
        allowed = declared + 2**20 + 16 * 2**10 * objects
        if member.file_size > allowed:
            self.close()
            raise WeightsFileError(f"{path}: archive member {member.filename} inflates to {member.file_size} bytes, "
                                   f"but its datasets need {declared} (limit {allowed}); refusing it")

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


def _too_large(path: Path, name: str, size: int | str, limit: int) -> WeightsFileError:
    return WeightsFileError(f"{path}: archive member {name} inflates to {size} bytes, more than the {limit} "
                            "allowed for it; refusing to read it")


def _read_bounded(path: Path, zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, refused on its header's size before inflating, and after ``limit`` bytes if the
    header lied (zipfile stops at the header's size and then fails the CRC)."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise _too_large(path, name, info.file_size, limit)
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # pragma: no cover - zipfile itself stops at the header's size
        raise _too_large(path, name, f"more than {limit}", limit)
    return data


def _weights_member(path: Path, zf: zipfile.ZipFile, member: zipfile.ZipInfo) -> Any:
    """A file object on the weights member: a window on the archive when stored (Keras writes it so), else
    inflated in chunks into a temporary file (memory stays bounded whatever the member's size)."""
    if member.compress_type == zipfile.ZIP_STORED:
        start = _data_offset(path, member)
        if member.compress_size != member.file_size or start + member.file_size > path.stat().st_size:
            raise WeightsFileError(f"{path} is a corrupt zip archive: {member.filename} claims "
                                   f"{member.file_size} bytes the archive does not hold")
        return _Window(path, start, member.file_size)
    if member.file_size > max(WEIGHTS_RATIO_FLOOR, WEIGHTS_RATIO_LIMIT * member.compress_size):
        raise WeightsFileError(f"{path}: archive member {member.filename} inflates to {member.file_size} bytes "
                               f"from {member.compress_size} (more than {WEIGHTS_RATIO_LIMIT}x); refusing to read "
                               "it")
    spool = tempfile.SpooledTemporaryFile(max_size=32 * 2**20)  # noqa: SIM115 - closed with the reader
    try:
        with zf.open(member) as f:
            shutil.copyfileobj(f, spool, _CHUNK)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


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
