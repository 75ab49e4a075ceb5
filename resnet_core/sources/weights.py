"""Weights of any source, read, converted or described: the public faces of :func:`.resolve.resolve`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import to_numpy
from ..errors import InputError
from ..io import api as io_api
from ..io.atomic import check_output
from ..io.formats import format_for
from .resolve import ARCHITECTURE_KINDS, Resolved, SourceArg, architecture, kind_of, label, resolve


def _weights_of(resolved: Resolved, source: Any) -> dict[str, np.ndarray]:
    if resolved.weights is None:
        raise InputError(f"{label(source)!r} is an architecture ({resolved.origin}), not weights: "
                         "rc.build(...) gives it random weights; pass a weights file, model folder or hub name")
    return resolved.weights


def read_weights(source: SourceArg, spec: SourceArg | None = None, dtype: str | None = None) -> io_api.LoadedWeights:
    """The spec and canonical weights of ``source``: torchvision names, PyTorch layouts, numpy arrays the caller owns.

    ``source`` is a weights file (``.safetensors``, ``.pth``/``.pt``, ``.weights.h5``, ``.keras``), an ``.npz``
    of canonical arrays, a model folder, or ``hf-hub:ORG/NAME[@REV]``, ``torchvision:NAME.TAG``,
    ``local-dir:PATH`` (see :mod:`resnet_core.sources.resolve` for the rule). The spec of a file is ``spec`` if
    given, else the one the file stores, else inferred from the tensors. bfloat16 tensors are
    ``ml_dtypes.bfloat16`` arrays.

    Args:
        source: A weights file, ``.npz``, model folder or hub name.
        spec: The architecture (preset name, spec, or spec ``.json``) when a file's own is not wanted.
        dtype: Cast every tensor to this dtype (``"float32"``, ``"float16"``, ``"bfloat16"``, ...).

    Returns:
        A :class:`~resnet_core.io.LoadedWeights`: it unpacks as two values, ``spec, weights`` (the spec and a
        dict of canonical names to numpy arrays), as it always has; ``.info`` is the trained-with record
        (None when the source has none).

    Raises:
        MissingFileError: ``source`` is a path that does not exist.
        UnknownNameError: ``source`` is a bare name and no preset.
        InputError: The extension names no supported format, a bare name exists on disk (write ``./NAME``),
            an unknown ``prefix:``, or ``source`` is an architecture without weights.
        SourceError: A hub name the hub forbids, or a source that cannot be fetched or read.
        WeightsFileError: The file is damaged or not what its extension says.
        InferenceError: The file stores no spec and none can be inferred from its tensors.
        WeightsMismatchError: The tensors do not match the spec (missing, unexpected or misshapen).
        MissingDependencyError: The format's library (safetensors, h5py, torch) is not installed.

    Example:
        >>> import os, tempfile, numpy as np, resnet_core as rc
        >>> from resnet_core.testing import random_weights
        >>> spec, tmp = rc.get_spec("tiny_resnext"), tempfile.TemporaryDirectory()
        >>> weights = random_weights(spec)  # canonical names -> numpy arrays
        >>> path = rc.write_weights(os.path.join(tmp.name, "tiny.safetensors"), weights, spec)
        >>> spec_read, weights_read = rc.read_weights(path)
        >>> spec_read == spec, len(weights_read), rc.read_weights(path).info
        (True, 102, None)
        >>> all(np.array_equal(weights_read[name], weights[name]) for name in weights)
        True
        >>> rc.read_weights(path, dtype="float16").weights["fc.weight"].dtype
        dtype('float16')
        >>> tmp.cleanup()
    """
    resolved = resolve(source, spec=spec, dtype=dtype)
    return io_api.LoadedWeights(resolved.spec, _weights_of(resolved, source), resolved.info)


def convert(source: SourceArg, target: str | os.PathLike, spec: SourceArg | None = None, dtype: str | None = None,
            overwrite: bool = False, progress: Callable[[int, int], Callable[[int], None]] | None = None
            ) -> io_api.ConvertResult:
    """:func:`resnet_core.io.convert` for any source: a weights file streams tensor by tensor; a hub name or
    model folder is read whole, after the output is checked (so nothing is fetched for an output that exists)."""
    kind, found = kind_of(source)
    given = None if spec is None else architecture(spec)
    if kind == "weights-file":
        return io_api.convert(found, target, given, dtype, overwrite, progress)
    if kind in ARCHITECTURE_KINDS:
        _weights_of(resolve(source), source)  # the "architecture, not weights" error
    format_for(target)
    check_output(Path(target), overwrite)
    resolved = resolve(source, spec=given, dtype=dtype)
    if resolved.path is not None and Path(target).exists() and os.path.samefile(resolved.path, target):
        raise InputError(f"Input and output are the same file ({os.fspath(target)!r}); write to a new path")
    loaded = io_api.LoadedWeights(resolved.spec, _weights_of(resolved, source), resolved.info)
    return io_api.convert_loaded(loaded, label(source), target, None, overwrite)


def describe(source: SourceArg, spec: SourceArg | None = None) -> dict[str, Any]:
    """What ``resnet-core info`` shows of ``source`` (see :func:`resnet_core.io.describe`); a weights file's
    tensors are checked, not read."""
    kind, found = kind_of(source)
    if kind == "weights-file":
        return io_api.describe(found, None if spec is None else architecture(spec))
    if kind in ARCHITECTURE_KINDS:
        raise InputError(f"{label(source)!r} is an architecture, not weights; `resnet-core summary` "
                         "(rc.summary) describes it")
    resolved = resolve(source, spec=spec)
    loaded = io_api.LoadedWeights(resolved.spec, _weights_of(resolved, source), resolved.info)
    return io_api.describe_loaded(loaded, label(source))


def float32(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Canonical weights as float32 numpy arrays (from numpy or any framework's tensors)."""
    return {k: np.asarray(to_numpy(v), dtype=np.float32) for k, v in weights.items()}


def read_float32(source: SourceArg, spec: SourceArg | None = None) -> Resolved:
    """``source`` resolved with float32 weights: the loader export and parity share."""
    resolved = resolve(source, spec=spec)
    return replace(resolved, weights=float32(_weights_of(resolved, source)))


__all__ = ["convert", "describe", "float32", "read_float32", "read_weights"]
