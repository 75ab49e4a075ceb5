"""What this CPU can do natively, probed from the operating system, never assumed.

Which runtime and precision is fastest depends on a handful of instruction-set extensions: without native
bfloat16 (AVX-512 BF16 or AMX on x86, the BF16 extension on Arm) a bfloat16 model is emulated and runs several
times slower than float32, while int8 kernels gain most from VNNI. :func:`native_bf16` is the one probe the
library asks; tests fake it with monkeypatch.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The features that decide the outcome, as the kernel names them (x86 "flags", Arm "Features").
DECISIVE = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
            "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "i8mm", "bf16", "sve")
NATIVE_BF16 = ("avx512_bf16", "amx_bf16", "bf16")  # Arm's "bf16": the BFloat16 extension (FEAT_BF16)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """Every feature flag /proc/cpuinfo lists for the first processor (empty where there is none, e.g. macOS)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in ("model name", "hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def features() -> list[str]:
    """The decisive features this CPU has, in :data:`DECISIVE` order."""
    flags = cpu_flags()
    return [f for f in DECISIVE if f in flags]


def native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware; False means a bfloat16 model is emulated (slow)."""
    return any(f in cpu_flags() for f in NATIVE_BF16)


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None when it does not say."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cores, physical = set(), "0"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def machine() -> dict[str, object]:
    """The CPU as a benchmark records it: model, cores, threads usable by this process, decisive features."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "arch": platform.machine(), "cores": physical_cores(), "threads": usable,
            "features": features(), "native_bf16": native_bf16(), "os": platform.platform()}
