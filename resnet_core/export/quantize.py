"""int8 ONNX through ONNX Runtime's static quantisation: QDQ, per-channel int8 weights, uint8 activations
whose ranges come from calibration images (min/max)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import MissingFileError
from .formats import ExportError
from .metadata import INPUT_NAME
from .to_onnx import set_metadata

QUANTIZE_MODES = ("int8",)
CALIBRATION_BATCH = 8


def load_calibration(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Calibration images from an ``.npy``: float32, NCHW, preprocessed as the model expects."""
    path = Path(path)
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise MissingFileError(f"--calibration expects an existing .npy file of images. Received: {str(path)!r}")
    images = np.load(path, allow_pickle=False)
    if images.ndim != 4 or images.shape[1] != channels or images.shape[0] < 1:
        raise ExportError(f"{path}: calibration images must be (N, {channels}, H, W), NCHW and preprocessed; "
                          f"got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all():
        raise ExportError(f"{path}: calibration images must be finite floats; got {images.dtype}")
    return images.astype(np.float32)


def quantize_int8(model_fp32: Path, target: Path, images: np.ndarray, metadata: dict[str, str]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(images, max(1, len(images) // CALIBRATION_BATCH)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="resnet-core-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    set_metadata(target, {**metadata, "quantization": f"int8 static, ONNX Runtime QDQ, per-channel int8 weights, "
                                                     f"uint8 activations, min/max over {len(images)} images"})
