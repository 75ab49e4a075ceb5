"""Build the model an artifact is written from and call the format's writer: torch in this process, Keras on
the engine the format needs (here when this process runs it, else in a child process)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .metadata import output_name
from .source import Source


def _writer(fmt: str, origin: str):
    return getattr(importlib.import_module(f"resnet_core.export.to_{fmt}"), f"write_from_{origin}")


def write_torch(fmt: str, source: Source, path: Path, size: tuple[int, int], opset: int,
                metadata: dict[str, str]) -> None:
    from ..api import build, set_weights

    model = build(source.spec, backend="torch")
    set_weights(model, source.weights)
    _writer(fmt, "torch")(model.eval(), path, size, opset, metadata, output_name(source.spec))


def write_keras(fmt: str, source: Source, path: Path, size: tuple[int, int], opset: int,
                metadata: dict[str, str]) -> None:
    from ..api import build, set_weights

    model = build(source.spec, backend="keras")
    set_weights(model, source.weights)
    _writer(fmt, "keras")(model, path, size, opset, metadata, output_name(source.spec))


def _runs_engine(engine: str) -> bool:
    """Whether this process runs (or, Keras not yet imported, will run) Keras on ``engine``."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend() == engine
    return os.environ.get("KERAS_BACKEND") == engine


def write_in_engine(engine: str, fmt: str, source: Source, path: Path, size: tuple[int, int], opset: int,
                    metadata: dict[str, str]) -> None:
    if _runs_engine(engine):
        write_keras(fmt, source, path, size, opset, metadata)
        return
    with tempfile.TemporaryDirectory(prefix="resnet-core-export-") as tmp:
        weights = Path(tmp) / "weights.npz"
        np.savez(weights, **source.weights)  # type: ignore[arg-type]  # numpy stub: **kwds might hold allow_pickle
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"format": fmt, "spec": source.spec.to_dict(), "weights": str(weights),
                                   "path": str(path), "size": list(size), "opset": opset, "metadata": metadata}))
        env = {**os.environ, "KERAS_BACKEND": engine, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run([sys.executable, "-m", "resnet_core.export.writers", str(job)], env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-4:] if line.strip())
        raise RuntimeError(f"Exporting {fmt} on Keras's {engine} engine failed: {tail}")


def _child(job_path: str) -> int:
    from .. import _source_tree  # noqa: F401 - a source checkout's resnet_core.backends
    from ..spec import ResNetSpec

    job: dict[str, Any] = json.loads(Path(job_path).read_text())
    with np.load(job["weights"]) as data:
        weights = {k: data[k] for k in data.files}
    source = Source(ResNetSpec.from_dict(job["spec"]), weights, "")
    write_keras(job["format"], source, Path(job["path"]), tuple(job["size"]), job["opset"], job["metadata"])
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
