"""Reading, writing and converting weight files: one path for every format, validated before any output."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import to_numpy
from ..errors import InputError, InputTypeError, MissingFileError, NotAFileError, user_file
from ..mapping import WeightsMismatchError, check_weights
from ..plan import make_plan
from ..presets import get_spec
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo
from .atomic import atomic_output, check_output
from .formats import Format, Reader, TensorInfo, WeightsFileError, dtype_by_name, format_for
from .infer import InferenceError, infer_spec

SpecArg = str | ResNetSpec | None


class LoadedWeights(tuple):
    """``spec, weights = read_weights(path)``; also ``result.weights`` and ``result.info``, the trained-with
    record (None when the source has none)."""

    spec: ResNetSpec
    weights: dict[str, np.ndarray]
    info: WeightsInfo | None

    def __new__(cls, spec: ResNetSpec, weights: dict[str, np.ndarray], info: WeightsInfo | None = None
                ) -> LoadedWeights:
        self = super().__new__(cls, (spec, weights))
        self.spec, self.weights, self.info = spec, weights, info
        return self

    def __repr__(self) -> str:
        return f"LoadedWeights(spec={self.spec.name!r}, {len(self.weights)} tensors, info={self.info!r})"


@dataclass
class OpenedWeights:
    """A weights file with its spec settled and its tensors checked against it; no tensor read yet."""

    path: Path
    format: Format
    reader: Reader
    spec: ResNetSpec
    spec_source: str  # "file" | "argument" | "inferred"
    note: str  # how the spec was found, for people
    tensors: dict[str, TensorInfo]  # canonical names, in plan order

    @property
    def info(self) -> WeightsInfo | None:
        """The trained-with record the file stores (None if it has none)."""
        return self.reader.stored_info

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> OpenedWeights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_spec(value: str | ResNetSpec) -> ResNetSpec:
    """A spec from a preset name or a ResNetSpec (paths, such as a spec ``.json``, are read by
    :func:`resnet_core.sources.resolve`)."""
    return get_spec(value)


def _input(path: str | os.PathLike) -> tuple[Path, Format]:
    path = Path(path)
    fmt = format_for(path)
    if not path.exists():
        raise MissingFileError(f"No such file: {str(path)!r}")
    if path.is_dir():
        raise NotAFileError(f"{str(path)!r} is a directory, not a weights file")
    return path, fmt


def open_weights(path: str | os.PathLike, spec: SpecArg = None, prefer_stored: bool = False) -> OpenedWeights:
    """Open ``path``, settle its spec (``spec``, else the file's, else inferred; with ``prefer_stored``, the file's
    before ``spec``) and check every tensor's name, shape and dtype against it. Raises one error naming the file
    and every problem.
    """
    path, fmt = _input(path)
    with user_file(path):
        reader = fmt.open(path)
    try:
        if spec is not None and not (prefer_stored and reader.stored_spec is not None):
            resolved, source = resolve_spec(spec), "argument"
            note = f"spec {resolved.name} given"
        elif reader.stored_spec is not None:
            resolved, source, note = reader.stored_spec, "file", f"spec {reader.stored_spec.name} stored in the file"
        else:
            try:
                resolved, note = infer_spec(reader.tensors(None))
            except InferenceError as exc:
                raise InferenceError(f"Cannot infer the architecture of {path}: {exc}. Pass its architecture "
                                     "as spec=NAME (a preset name, see rc.list_specs(), or a ResNetSpec)") from None
            source = "inferred"
        tensors = reader.tensors(resolved)
        plan = make_plan(resolved)
        try:
            check_weights(plan, tensors, strict=True)
        except WeightsMismatchError as exc:
            raise _mismatch(exc, path, resolved, note) from None
        except TypeError as exc:
            raise InputTypeError(f"{path}: {exc}") from None
        ordered = {p.name: tensors[p.name] for p in plan.params}
        return OpenedWeights(path, fmt, reader, resolved, source, note, ordered)
    except BaseException:
        reader.close()
        raise


def _clip(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _mismatch(exc: WeightsMismatchError, path: Path, spec: ResNetSpec, note: str) -> WeightsMismatchError:
    """The same error, worded for a file: the first shape mismatch with both shapes, then every missing and
    unexpected key (clipped)."""
    parts = []
    if exc.mismatched:
        name, expected, got = exc.mismatched[0]
        parts.append(f"{name} has shape {tuple(got)} in the file but {spec.name} expects {tuple(expected)}"
                     + (f" ({len(exc.mismatched)} shapes differ)" if len(exc.mismatched) > 1 else ""))
    if exc.missing:
        parts.append(f"missing {len(exc.missing)} key(s): {_clip(exc.missing)}")
    if exc.unexpected:
        parts.append(f"unexpected {len(exc.unexpected)} key(s): {_clip(exc.unexpected)}")
    error = WeightsMismatchError(exc.missing, exc.unexpected, exc.mismatched)
    error.args = (f"{path} does not fit {spec.name} ({note}): " + "; ".join(parts),)
    return error


def _caster(dtype: str | None) -> tuple[Callable[[TensorInfo], TensorInfo], Callable[[np.ndarray], np.ndarray]]:
    if dtype is None:
        return (lambda info: info), (lambda array: array)
    target = dtype_by_name(dtype)
    return (lambda info: TensorInfo(info.shape, target)), \
        (lambda array: array if array.dtype == target else array.astype(target))


def _extension(path: Path, fmt: Format) -> str:
    name = path.name.lower()
    return max((e for e in fmt.extensions if name.endswith(e)), key=len)


def _write(fmt: Format, path: Path, spec: ResNetSpec, tensors: dict[str, TensorInfo],
           get: Callable[[str], np.ndarray], overwrite: bool, progress: Callable[[int], None],
           info: WeightsInfo | None = None) -> None:
    with user_file(path), atomic_output(path, overwrite, suffix=_extension(path, fmt)) as tmp:
        fmt.write(tmp, spec, tensors, get, progress, info=info)


@dataclass(frozen=True)
class ConvertResult:
    source: Path
    target: Path
    spec: ResNetSpec
    note: str
    count: int
    nbytes: int
    dtypes: tuple[str, ...]


def convert(source: str | os.PathLike, target: str | os.PathLike, spec: SpecArg = None, dtype: str | None = None,
            overwrite: bool = False, progress: Callable[[int, int], Callable[[int], None]] | None = None
            ) -> ConvertResult:
    """Convert ``source`` to ``target`` (formats by extension), tensor by tensor, bit for bit unless ``dtype``.

    The whole input is validated before the output is created; the output appears only when complete,
    and never replaces an existing file unless ``overwrite``. ``progress(total_bytes, count)``, if given,
    returns a callback receiving the bytes written as they go.
    """
    target = Path(target)
    fmt_out = format_for(target)
    src, _ = _input(source)
    if target.exists() and os.path.samefile(src, target):
        raise InputError(f"Input and output are the same file ({str(target)!r}); write to a new path")
    check_output(target, overwrite)
    cast_info, cast = _caster(dtype)
    with open_weights(src, spec) as opened:
        tensors = {name: cast_info(info) for name, info in opened.tensors.items()}
        total = sum(t.nbytes for t in tensors.values())
        update = progress(total, len(tensors)) if progress is not None else (lambda n: None)

        def get(name: str) -> np.ndarray:
            return cast(opened.reader.read(name))

        _write(fmt_out, target, opened.spec, tensors, get, overwrite, update, opened.info)
        dtypes = tuple(sorted({t.dtype.name for t in tensors.values()}))
        return ConvertResult(src, target, opened.spec, opened.note, len(tensors), total, dtypes)


def convert_loaded(loaded: LoadedWeights, label: str, target: str | os.PathLike, dtype: str | None = None,
                   overwrite: bool = False) -> ConvertResult:
    """Write weights already in memory (a hub repo's, a model folder's) to ``target``, as :func:`convert` does."""
    target = Path(target)
    _, cast = _caster(dtype)
    weights = {k: cast(v) for k, v in loaded.weights.items()}
    write_weights(target, weights, loaded.spec, overwrite=overwrite, info=loaded.info)
    tensors = weights.values()
    return ConvertResult(Path(label), target, loaded.spec, f"spec {loaded.spec.name} from {label}", len(tensors),
                         sum(t.nbytes for t in tensors), tuple(sorted({t.dtype.name for t in tensors})))


def read_weights(path: str | os.PathLike, spec: SpecArg = None, dtype: str | None = None) -> LoadedWeights:
    """``(spec, weights)`` from one weights file: canonical names and layouts, numpy arrays the caller owns.

    The file layer under :func:`resnet_core.read_weights`, which takes any source (hub names, model folders,
    spec files) through :func:`resnet_core.sources.resolve`. The spec is ``spec`` if given, else the one the
    file stores, else inferred from the tensors. bfloat16 tensors are ``ml_dtypes.bfloat16`` arrays.
    ``dtype`` casts every tensor.

    Args:
        path: A weights file (``.safetensors``, ``.pth``/``.pt``, ``.weights.h5``, ``.keras``).
        spec: The architecture (a preset name or a spec) when the file's own is not wanted.
        dtype: Cast every tensor to this dtype (``"float32"``, ``"float16"``, ``"bfloat16"``, ...).

    Returns:
        A :class:`~resnet_core.io.LoadedWeights`: it unpacks as ``spec, weights`` (the spec and a dict of
        canonical names to numpy arrays); ``.info`` is the trained-with record (None when the file has none).

    Raises:
        MissingFileError: ``path`` does not exist.
        NotAFileError: ``path`` is a folder.
        InputError: The extension names no supported format.
        WeightsFileError: The file is damaged or not what its extension says.
        InferenceError: The file stores no spec and none can be inferred from its tensors.
        WeightsMismatchError: The tensors do not match the spec (missing, unexpected or misshapen).
        MissingDependencyError: The format's library (safetensors, h5py, torch) is not installed.
    """
    _, cast = _caster(dtype)
    return LoadedWeights(*read_file(path, spec, cast, copy=True)[1:])


def read_for_build(path: str | os.PathLike, spec: SpecArg = None) -> LoadedWeights:
    """``read_weights(path, spec)`` whose arrays may be read-only views of the file (a memory map).

    For the adapters' build paths only, which copy every tensor into the framework anyway: skipping
    read_weights' own copy saves a pass over the weights (a tenth of a second for resnet50).
    """
    return LoadedWeights(*read_file(path, spec, lambda array: array, copy=False)[1:])


def read_file(path: str | os.PathLike, spec: SpecArg = None, cast: Callable[[np.ndarray], np.ndarray] | None = None,
              copy: bool = True, prefer_stored: bool = False
              ) -> tuple[OpenedWeights, ResNetSpec, dict[str, np.ndarray], WeightsInfo | None]:
    """The opened file (closed again: its spec, note and record stay readable), its spec, canonical weights
    (``copy``: arrays the caller owns, else maybe read-only views of the file) and trained-with record."""
    with open_weights(path, spec, prefer_stored) as opened:
        weights = {}
        for name in opened.tensors:
            array = opened.reader.read(name) if cast is None else cast(opened.reader.read(name))
            owned = array.flags.owndata and not isinstance(array, np.memmap)
            weights[name] = np.array(array) if copy and not owned else array
        return opened, opened.spec, weights, opened.info


def write_weights(path: str | os.PathLike, weights: Mapping[str, Any], spec: str | ResNetSpec,
                  dtype: str | None = None, overwrite: bool = False, info: WeightsInfo | None = None) -> Path:
    """Write canonical ``weights`` of ``spec`` to ``path`` in the format its extension names, with ``info``
    (the trained-with record) in its metadata when given.

    Every format keeps the spec (``.pth`` in the state_dict's ``_metadata``), so :func:`read_weights`
    of the file alone rebuilds the model. Refuses to replace an existing file unless ``overwrite``.

    Args:
        path: The output file; its extension picks the format (``.safetensors``, ``.pth``/``.pt``,
            ``.weights.h5``, ``.keras``).
        weights: Canonical names to arrays (numpy, or any framework's tensors), exactly the spec's.
        spec: The architecture: a preset name or a spec.
        dtype: Cast every tensor to this dtype before writing.
        overwrite: Replace an existing file.
        info: The trained-with record to store in the file's metadata.

    Returns:
        ``path``, as a :class:`pathlib.Path`.

    Raises:
        WeightsMismatchError: ``weights`` does not hold exactly the spec's tensors, in their shapes.
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        InputError: The extension names no supported format.
        UnknownNameError: ``spec`` names no preset.
        MissingDependencyError: The format's library (safetensors, h5py, torch, keras) is not installed.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import resnet_core as rc
        >>> from resnet_core.testing import random_weights
        >>> spec = rc.get_spec("tiny_resnext")
        >>> weights = random_weights(spec)  # canonical names -> numpy arrays
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = rc.write_weights(os.path.join(tmp.name, "tiny.safetensors"), weights, spec)
        >>> path.name
        'tiny.safetensors'
        >>> rc.write_weights(path, weights, spec)
        Traceback (most recent call last):
        ...
        resnet_core.errors.OutputExistsError: Output '...tiny.safetensors' already exists; pass overwrite=True ...
        >>> tmp.cleanup()
    """
    path = Path(path)
    fmt = format_for(path)
    resolved = resolve_spec(spec)
    plan = make_plan(resolved)
    arrays = {name: to_numpy(value) for name, value in weights.items()}
    check_weights(plan, arrays, strict=True)
    cast_info, cast = _caster(dtype)
    tensors = {p.name: cast_info(TensorInfo(tuple(arrays[p.name].shape), arrays[p.name].dtype)) for p in plan.params}
    _write(fmt, path, resolved, tensors, lambda name: cast(arrays[name]), overwrite, lambda n: None, info)
    return path


def describe_loaded(loaded: LoadedWeights, label: str) -> dict[str, Any]:
    """:func:`describe`'s answer for weights already in memory (a hub repo's, a model folder's)."""
    tensors = loaded.weights.values()
    return {"file": label, "format": "source", "producer": "resnet_core.sources", "file_bytes": 0,
            "spec": loaded.spec.to_dict(), "spec_source": "source", "note": f"read from {label}",
            "tensors": len(loaded.weights), "tensor_bytes": sum(t.nbytes for t in tensors),
            "dtypes": sorted({t.dtype.name for t in tensors}), "parameters": make_plan(loaded.spec).num_params,
            "weights_info": None if loaded.info is None else loaded.info.to_dict()}


def describe(path: str | os.PathLike, spec: SpecArg = None) -> dict[str, Any]:
    """What ``resnet-core info`` shows of a weights file: format, producer, spec and where it came from, tensors,
    dtypes, sizes.

    A file whose spec cannot be inferred is still described (``spec`` None, ``spec_error`` set); any other
    problem raises.
    """
    path, fmt = _input(path)
    out: dict[str, Any] = {"file": str(path), "format": fmt.name, "file_bytes": path.stat().st_size}
    try:
        opened = open_weights(path, spec)
    except InferenceError as exc:
        with fmt.open(path) as reader:
            raw = reader.raw()
            out.update(producer=reader.producer, spec=None, spec_source=None, spec_error=str(exc),
                       tensors=len(raw), tensor_bytes=sum(t.nbytes for t in raw.values()),
                       dtypes=sorted({t.dtype.name for t in raw.values()}))
        return out
    with opened:
        plan = make_plan(opened.spec)
        out.update(
            producer=opened.reader.producer, spec=opened.spec.to_dict(), spec_source=opened.spec_source,
            note=opened.note, tensors=len(opened.tensors), tensor_bytes=opened.nbytes,
            dtypes=sorted({t.dtype.name for t in opened.tensors.values()}),
            parameters=plan.num_params, weights_info=None if opened.info is None else opened.info.to_dict(),
        )
    return out


__all__ = [
    "ConvertResult", "LoadedWeights", "OpenedWeights", "WeightsFileError", "convert", "describe", "open_weights",
    "read_weights", "resolve_spec", "write_weights",
]
