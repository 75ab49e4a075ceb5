"""Models in reduced precision: the whole model (weights and activations) in bfloat16 or float16."""

from __future__ import annotations

import sys
import warnings
from types import FrameType
from typing import Any

from . import cpu_features
from .backends import load_adapter
from .errors import InputError
from .plan import Plan

BUILD_DTYPES = ("float32", "bfloat16", "float16")


def check_dtype(dtype: str) -> str:
    if dtype not in BUILD_DTYPES:
        raise InputError(f"Unknown dtype {dtype!r}. Expected one of {', '.join(BUILD_DTYPES)}")
    return dtype


EMULATED_BF16 = ("bfloat16 is emulated on this CPU ({cpu}: no avx512_bf16 / amx_bf16 in /proc/cpuinfo), so a "
                 "bfloat16 model runs slower than float32 here (6x on an AVX2-only EPYC, resnet50). For speed use "
                 "int8 through onnxruntime (resnet_core.export(..., quantize='int8')), or keep float32; "
                 "`resnet-core bench MODEL` measures every option on this machine.")
_warned: list[bool] = []  # warn once per process


def warn_if_bf16_emulated(dtype: str) -> None:
    """A bfloat16 build on a CPU without native bf16 warns, once: it is the slow path there, not the fast one."""
    if dtype != "bfloat16" or _warned or cpu_features.native_bf16():
        return
    _warned.append(True)
    warnings.warn(EMULATED_BF16.format(cpu=cpu_features.cpu_model()), UserWarning, stacklevel=_caller_level())


def _caller_level() -> int:
    """The stacklevel of the first frame outside resnet-core: the warning points at the user's own line,
    however many of our calls lie between."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "resnet_core":
        frame, level = frame.f_back, level + 1
    return level


def build_in_dtype(plan: Plan, backend: str, dtype: str) -> Any:
    """torch: the module cast to ``dtype`` (feed it inputs of that dtype); keras: every layer's dtype policy is
    ``dtype`` (Keras casts float inputs itself). BatchNorm statistics are held in ``dtype`` too.

    A reduced-precision torch model keeps its conv kernels channels-last: oneDNN's bfloat16 kernels run
    1.7x (batch 1) to 2.4x (batch 8) faster than torchvision fp32 that way, against 1.4x / 1.7x in NCHW
    (resnet50, a CPU with avx512_bf16; ``benchmarks/inference.py``). Without native bf16 they are emulated,
    about 6x slower than fp32: that build warns (:func:`warn_if_bf16_emulated`). Inputs may stay NCHW.
    float32 models keep the default layout, which is what makes them bit-identical to torchvision's."""
    check_dtype(dtype)
    warn_if_bf16_emulated(dtype)
    adapter = load_adapter(backend)
    if backend == "keras":
        return adapter.build(plan, dtype=dtype)
    import torch

    model = adapter.build(plan).to(getattr(torch, dtype))
    return model if dtype == "float32" else model.to(memory_format=torch.channels_last)
