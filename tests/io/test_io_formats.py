"""The format registry and the import rule: formats by extension, no framework imported by resnet_core.io."""

from __future__ import annotations

import pytest
from import_probe import attempted

from resnet_core.io import format_for, known_extensions


@pytest.mark.parametrize("name, fmt", [
    ("m.safetensors", "safetensors"), ("M.SAFETENSORS", "safetensors"), ("dir.v1/m.pth", "pytorch"),
    ("m.pt", "pytorch"), ("m.weights.h5", "keras-weights"), ("model.Weights.H5", "keras-weights"),
    ("m.keras", "keras"), ("a.keras.pth", "pytorch"), ("m.onnx", "onnx"), ("M.ONNX", "onnx"),
])
def test_format_follows_the_extension(name, fmt):
    assert format_for(name).name == fmt


@pytest.mark.parametrize("name", ["m.h5", "m.tflite", "m", ".safetensors", "m.safetensors.tmp", "weights.h5"])
def test_unknown_extensions_are_refused_with_the_list(name):
    with pytest.raises(ValueError, match="Known extensions: " + ", ".join(known_extensions()).replace(".", r"\.")):
        format_for(name)


def test_importing_resnet_core_io_tries_no_framework(run_python):
    """Not even an attempt: the frameworks and the io extras load only when a file of theirs is read."""
    code = "import resnet_core, resnet_core.io, resnet_core.commands.convert, resnet_core.commands.info\n"
    assert attempted(run_python, code) == []
