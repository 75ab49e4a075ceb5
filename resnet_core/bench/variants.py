"""What ``resnet-core bench`` can measure: engines, their precisions and layouts, and the packages each needs.

Framework-free: the parent validates requests here before any worker starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import InputError, MissingDependencyError
from ..parity.engines import REQUIRES as PARITY_REQUIRES

DTYPES = ("float32", "bfloat16", "float16", "int8")
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "i8": "int8"}


class Variant(NamedTuple):
    """One way to run the model: an engine, a precision and the activation layout it runs in."""

    engine: str
    dtype: str
    layout: str

    @property
    def key(self) -> str:
        return f"{self.engine}|{self.dtype}|{self.layout}"


# torch: reduced precision is built channels-last (resnet_core.precision); fp32 is measured in both layouts,
# since which one is faster depends on the CPU's oneDNN kernels.
VARIANTS: dict[str, tuple[Variant, ...]] = {
    "torch": (Variant("torch", "float32", "NCHW"), Variant("torch", "float32", "channels_last"),
              Variant("torch", "bfloat16", "channels_last"), Variant("torch", "float16", "channels_last")),
    "onnxruntime": (Variant("onnxruntime", "float32", "NCHW"), Variant("onnxruntime", "int8", "NCHW")),
    "litert": (Variant("litert", "float32", "NHWC"),),
    **{e: tuple(Variant(e, d, "NHWC") for d in ("float32", "bfloat16", "float16"))
       for e in ("keras-jax", "keras-tensorflow", "keras-torch")},
}
ENGINES = tuple(VARIANTS)
REFERENCE = Variant("torch", "float32", "NCHW")  # fidelity is measured against our fp32 torch model
REQUIRES = {engine: PARITY_REQUIRES[engine] for engine in ENGINES}


def missing(engine: str) -> str | None:
    """Why ``engine`` cannot run here (a package is not installed), or None. Imports nothing."""
    absent = [pkg for pkg in REQUIRES[engine] if importlib.util.find_spec(pkg) is None]
    return f"not installed: {', '.join(absent)}" if absent else None


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    if not names:
        raise InputError("An empty list was given; leave the option out to measure everything")
    return list(dict.fromkeys(names))


def parse_dtypes(value: str | Sequence[str] | None) -> tuple[str, ...]:
    names = _names(value)
    if names is None:
        return DTYPES
    out = []
    for name in names:
        dtype = ALIASES.get(name, name)
        if dtype not in DTYPES:
            raise InputError(f"Unknown dtype {name!r}. Expected some of {', '.join(DTYPES)} (or fp32, bf16, fp16)")
        out.append(dtype)
    return tuple(dict.fromkeys(out))


def select(engines: str | Sequence[str] | None, dtypes: str | Sequence[str] | None
           ) -> tuple[list[Variant], dict[str, str]]:
    """The variants to measure and the engines skipped (name -> reason).

    Engines named explicitly must be installed (else MissingDependencyError: bad input); by default every
    installed engine runs and the others are reported as skipped.
    """
    wanted = _names(engines)
    for name in wanted or ():
        if name not in VARIANTS:
            raise InputError(f"Unknown engine {name!r}. Expected some of {', '.join(ENGINES)}")
    chosen_dtypes = parse_dtypes(dtypes)
    skipped: dict[str, str] = {}
    variants: list[Variant] = []
    for engine in wanted or ENGINES:
        reason = missing(engine)
        if reason is not None:
            if wanted is not None:
                raise MissingDependencyError(f"Engine {engine!r} is {reason}: pip install 'resnet-core[all]'")
            skipped[engine] = reason
            continue
        variants += [v for v in VARIANTS[engine] if v.dtype in chosen_dtypes]
    if not variants:
        raise InputError(f"No installed engine runs {', '.join(chosen_dtypes)}: "
                         + "; ".join(f"{e}: {', '.join(dict.fromkeys(v.dtype for v in VARIANTS[e]))}"
                                     for e in (wanted or ENGINES)))
    return variants, skipped
