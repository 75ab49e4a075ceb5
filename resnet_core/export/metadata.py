"""What travels inside an artifact beside the graph: input layout, preprocessing and the spec."""

from __future__ import annotations

import json

from ..preprocess import normalisation_of
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo, preset_info

INPUT_NAME = "images"
METADATA_FILE = "resnet_core.json"  # SavedModel assets/ and .pt2 extra file


def output_name(spec: ResNetSpec) -> str:
    return "logits" if spec.include_top else "features"


def artifact_metadata(spec: ResNetSpec, layout: str, size: tuple[int, int],
                      info: WeightsInfo | None = None) -> dict[str, str]:
    """String key/values (ONNX metadata_props accepts nothing else): how to feed the artifact. ``info`` is
    the weights' trained-with record (default: the one the preset's usual weights imply)."""
    info = info or preset_info(spec.name)
    norm = normalisation_of(info)
    from .. import __version__

    channels = f"N{'CHW' if layout == 'NCHW' else 'HWC'}"
    return {
        "producer": f"resnet-core {__version__}",
        "input_name": INPUT_NAME,
        "output_name": output_name(spec),
        "input_layout": channels,
        "input_shape": json.dumps(_shape(layout, spec.in_channels, size)),
        "preprocessing": info.preprocessing,
        "preprocessing_formula": "((x / divisor) - mean) / std, per channel, after reversing RGB to BGR if bgr",
        "preprocessing_params": json.dumps({"divisor": norm.divisor, "mean": norm.mean, "std": norm.std,
                                            "bgr": norm.bgr}),
        "resnet_core_spec": spec.to_json(),
    }


def _shape(layout: str, channels: int, size: tuple[int, int]) -> list[int | str]:
    h, w = size
    return ["batch", channels, h, w] if layout == "NCHW" else ["batch", h, w, channels]
