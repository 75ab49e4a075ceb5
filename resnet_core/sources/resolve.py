"""What an argument means: the one place that reads a preset name, a spec, a file, a folder or a hub name.

The rule (every entry point follows it: ``rc.build``, ``rc.read_weights``, ``rc.info_of``, ``rc.export``,
``rc.parity``, ``rc.summary`` and every command):

- a :class:`ResNetSpec` is that architecture;
- ``hf-hub:ORG/NAME[@REVISION]``, ``torchvision:NAME.TAG`` and timm's ``local-dir:PATH`` name pretrained
  weights; any other ``prefix:`` is refused;
- a bare name (no separator, no extension) is a preset or registered name, never a path: a model folder
  called ``resnet18`` does not shadow the preset ``resnet18``. A bare name that is no preset but exists on
  disk is refused with the advice to write it as a path, ``./NAME``;
- a path is written as a path: ``./resnet50``, absolute, containing a separator, or with an extension.
  A folder is a model folder (as ``rc.save_pretrained`` writes it); a ``.json`` file is a spec; an ``.npz``
  holds canonical arrays; any other file is a weights file, its format named by its extension
  (:mod:`resnet_core.io.formats`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError, MissingFileError, user_file
from ..io.api import open_weights, read_file
from ..io.formats import ARRAYS_SUFFIX, SPEC_SUFFIX, dtype_by_name, format_for, legacy_info, spec_from_json
from ..io.infer import InferenceError, infer_spec
from ..presets import get_spec, list_specs
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .hub_names import HF_HUB, check_hub_name

TORCHVISION, LOCAL_DIR = "torchvision:", "local-dir:"
SCHEMES = (HF_HUB, TORCHVISION, LOCAL_DIR)

# What a source turned out to be (Resolved.kind).
KINDS = ("spec", "preset", "spec-json", "weights-file", "arrays", "folder", "hf-hub", "torchvision")
ARCHITECTURE_KINDS = ("spec", "preset", "spec-json")  # no weights

_PREFIX = re.compile(r"^([A-Za-z][\w.+-]+):")  # one letter is a Windows drive, not a prefix

SourceArg = str | os.PathLike | ResNetSpec


@dataclass(frozen=True)
class Resolved:
    """An argument, understood: its architecture, its weights (None for an architecture alone) and where
    they came from."""

    spec: ResNetSpec
    weights: dict[str, np.ndarray] | None  # canonical names and layouts
    info: WeightsInfo | None  # what the weights were trained with, when the source records it
    kind: str  # one of KINDS
    origin: str  # where the spec and weights came from, for people
    path: Path | None = None  # the file or folder, for path kinds
    spec_source: str = "given"  # "given" (the argument or spec=), "stored" (in the source) or "inferred"

    @property
    def has_weights(self) -> bool:
        return self.kind not in ARCHITECTURE_KINDS


def label(source: SourceArg) -> str:
    """``source`` as people read it, for messages."""
    return f"spec {source.name}" if isinstance(source, ResNetSpec) else os.fspath(source)


def written_as_path(text: str) -> bool:
    """A path as the rule writes one: absolute, starting with '.', containing a separator, or with an extension."""
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (os.path.isabs(text) or text.startswith(".") or any(s in text for s in separators)
            or bool(Path(text).suffix))


def kind_of(source: Any) -> tuple[str, Any]:
    """``(kind, target)`` of ``source`` without reading it: the spec, the preset name, the path or the hub name.

    Raises the input error for a malformed name, an unknown prefix, a bare name that is no preset (with
    the ``./NAME`` advice when such a file exists) and a path that does not exist.
    """
    if isinstance(source, ResNetSpec):
        return "spec", source
    if isinstance(source, os.PathLike):
        return _path_kind(Path(source), os.fspath(source))
    if not isinstance(source, str):
        raise InputTypeError(f"Expected a preset name, a ResNetSpec, a path or a hub name. Received: "
                             f"{type(source).__name__}")
    if source.startswith(HF_HUB):
        check_hub_name(source)
        return "hf-hub", source
    if source.startswith(TORCHVISION):
        return "torchvision", source
    if source.startswith(LOCAL_DIR):
        folder = source[len(LOCAL_DIR):]
        if not os.path.isdir(folder):
            raise MissingFileError(f"No such folder {folder!r} (from {source!r}): local-dir: names a model folder")
        return "folder", Path(folder)
    if source in list_specs():
        return "preset", source
    prefix = _PREFIX.match(source)
    if prefix and not os.path.exists(source):
        close = difflib.get_close_matches(prefix.group(0), SCHEMES, n=1)
        raise InputError(f"Unknown source prefix {prefix.group(0)!r} in {source!r}"
                         + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f". Known prefixes: {', '.join(SCHEMES)}; write a file as a path (./NAME)")
    if not written_as_path(source):
        if os.path.exists(source):
            raise InputError(f"{source!r} is no preset name; a bare name always means a preset, so to read the "
                             f"file or folder of that name write it as a path: './{source}'")
        get_spec(source)  # UnknownNameError listing the presets
    return _path_kind(Path(source), source)


def _path_kind(path: Path, text: str) -> tuple[str, Path]:
    if not path.exists():
        raise MissingFileError(f"No such file{'' if path.suffix else ' or folder'}: {text!r}")
    if path.is_dir():
        return "folder", path
    suffix = path.suffix.lower()
    if suffix == SPEC_SUFFIX:
        return "spec-json", path
    if suffix == ARRAYS_SUFFIX:
        return "arrays", path
    format_for(path)  # an unknown extension is refused here, naming the known ones
    return "weights-file", path


def resolve(source: SourceArg, *, spec: SourceArg | None = None, load: bool = True, views: bool = False,
            stored_first: bool = False, dtype: str | None = None) -> Resolved:
    """What ``source`` means (see the module docstring), read.

    Args:
        source: A preset or registered name, a :class:`ResNetSpec`, a spec ``.json``, a weights file, an
            ``.npz`` of canonical arrays, a model folder, or an ``hf-hub:``, ``torchvision:``, ``local-dir:`` name.
        spec: The architecture to read a weights file or ``.npz`` with (itself resolved: a preset, a spec or
            a spec ``.json``). Ignored by sources that always know theirs (folders, hub names).
        load: Read a weights file's tensors; False settles and checks its spec only (``weights`` None).
        views: A weights file's arrays may be read-only views of it (for callers that copy them anyway).
        stored_first: ``spec`` only for a file that stores none (else ``spec`` wins over the stored one).
        dtype: Cast every tensor to this dtype (``"float32"``, ``"float16"``, ``"bfloat16"``, ...).

    Returns:
        A :class:`Resolved`.
    """
    kind, target = kind_of(source)
    if kind == "spec":
        return Resolved(target, None, None, kind, f"spec {target.name}")
    if kind == "preset":
        return Resolved(get_spec(target), None, None, kind, f"preset {target}")
    if kind == "spec-json":
        found, info = _spec_file(target)
        return Resolved(found, None, info, kind, f"spec {found.name} from {target}", target)
    cast = _caster(dtype)
    if kind in ("hf-hub", "torchvision", "folder"):
        loaded = _named(kind, target, label(source))
        return Resolved(loaded.spec, _cast_all(loaded.weights, cast), loaded.info, kind, label(source),
                        target if kind == "folder" else None, "stored")
    given = None if spec is None else architecture(spec)
    if kind == "arrays":
        arrays = _arrays(target, given)
        return replace(arrays, weights=_cast_all(arrays.weights, cast))
    return _weights_file(target, given, load, views, stored_first, cast)


def _caster(dtype: str | None) -> Callable[[np.ndarray], np.ndarray] | None:
    if dtype is None:
        return None
    target = dtype_by_name(dtype)
    return lambda array: array if array.dtype == target else array.astype(target)


def _cast_all(weights: dict[str, np.ndarray] | None, cast: Callable[[np.ndarray], np.ndarray] | None
              ) -> dict[str, np.ndarray] | None:
    return weights if weights is None or cast is None else {k: cast(v) for k, v in weights.items()}


def architecture(value: SourceArg) -> ResNetSpec:
    """The spec ``value`` names: a preset, a :class:`ResNetSpec` or a spec ``.json`` (for ``spec=`` and ``--arch``)."""
    kind, target = kind_of(value)
    if kind not in ARCHITECTURE_KINDS:
        raise InputError(f"Expected an architecture (a preset name, a ResNetSpec or a spec .json). Received: "
                         f"{label(value)!r}, a {kind.replace('-', ' ')}")
    return resolve(value).spec


def _spec_file(path: Path) -> tuple[ResNetSpec, WeightsInfo | None]:
    with user_file(path):
        text = path.read_text(encoding="utf-8")
    found = spec_from_json(text, path)
    try:
        info = legacy_info(json.loads(text))  # a spec written while preprocessing was a spec field
    except json.JSONDecodeError:
        info = None
    return found, info


def _named(kind: str, target: Any, label: str) -> Any:
    if kind == "hf-hub":
        from .hub import load_hf_hub

        return load_hf_hub(target)
    if kind == "torchvision":
        from .torchvision_source import load_torchvision

        return load_torchvision(target)
    from .folder import load_folder

    return load_folder(target, label)


def _arrays(path: Path, spec: ResNetSpec | None) -> Resolved:
    """Canonical arrays in an ``.npz`` (as the parity workers exchange them): the spec given or inferred."""
    with user_file(path), np.load(path) as data:
        weights = {k: data[k] for k in data.files}
    if spec is not None:
        return Resolved(spec, weights, None, "arrays", f"{path} (spec {spec.name})", path)
    try:
        found, note = infer_spec(weights)
    except InferenceError as exc:
        raise InferenceError(f"Cannot infer the architecture of {path}: {exc}. Pass its architecture as "
                             "spec=NAME (a preset name, a ResNetSpec or a spec .json)") from None
    return Resolved(found, weights, None, "arrays", f"{path} ({note})", path, "inferred")


def _weights_file(path: Path, spec: ResNetSpec | None, load: bool, views: bool, stored_first: bool,
                  cast: Callable[[np.ndarray], np.ndarray] | None) -> Resolved:
    if load:
        opened, _, read, _ = read_file(path, spec, cast, copy=not views, prefer_stored=stored_first)
        weights: dict[str, np.ndarray] | None = read
    else:
        with open_weights(path, spec, stored_first) as opened:
            weights = None
    spec_source = {"argument": "given", "file": "stored"}.get(opened.spec_source, opened.spec_source)
    return Resolved(opened.spec, weights, opened.info, "weights-file", f"{path} ({opened.note})", path, spec_source)


__all__ = ["KINDS", "SCHEMES", "Resolved", "architecture", "check_hub_name", "kind_of", "label", "resolve",
           "written_as_path"]
