"""torch.export: an ExportedProgram with a dynamic batch axis, saved with its metadata as an extra file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .metadata import METADATA_FILE
from .to_onnx import EXPORT_BATCH


def write_from_torch(model: Any, path: Path, size: tuple[int, int], opset: int, metadata: dict[str, str],
                     output: str) -> None:
    import torch

    x = torch.zeros(EXPORT_BATCH, model.spec.in_channels, *size)
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, str(path), extra_files={METADATA_FILE: json.dumps(metadata)})


def read_metadata(path: str | Path) -> dict[str, str]:
    import torch

    extra = {METADATA_FILE: ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[METADATA_FILE])
