"""TensorFlow SavedModel, written by Keras's ``Model.export`` on the TensorFlow engine; the metadata goes
in ``assets/resnet_core.json``. Signature ``serving_default``, input ``images`` (NHWC), batch dynamic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .metadata import INPUT_NAME, METADATA_FILE


def write_from_keras(model: Any, path: Path, size: tuple[int, int], opset: int, metadata: dict[str, str],
                     output: str) -> None:
    import keras

    signature = [keras.InputSpec(shape=(None, *size, model.spec.in_channels), dtype="float32", name=INPUT_NAME)]
    model.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    (assets / METADATA_FILE).write_text(json.dumps(metadata, indent=1))


def read_metadata(path: str | Path) -> dict[str, str]:
    return json.loads((Path(path) / "assets" / METADATA_FILE).read_text())
