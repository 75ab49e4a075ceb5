"""One adapter per framework, imported lazily on first use (``import resnet_core`` imports none).

Each adapter module exposes ``build(plan)``, ``get_weights(model)``, ``set_weights(model, weights,
strict)`` and ``owns(model)``. Installed, this folder is the package ``resnet_core.backends``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from resnet_core.errors import InputTypeError, MissingDependencyError

# backend name -> (adapter module, framework import name, pip extra that installs it)
ADAPTERS = {
    "torch": ("resnet_core.backends.torch_adapter", "torch", "torch"),
    "keras": ("resnet_core.backends.keras_adapter", "keras", "keras"),
}
KERAS_ENGINES = ("jax", "tensorflow", "torch")  # each has its extra of the same name


def load_adapter(backend: str) -> ModuleType:
    module, framework, extra = ADAPTERS[backend]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name.split(".")[0] if exc.name is not None else None
        if missing == framework:
            raise MissingDependencyError(
                f"The {backend!r} backend needs the {framework!r} package, which is not installed. "
                f"Install it with: pip install 'resnet-core[{extra}]'"
            ) from exc
        if backend == "keras" and missing in KERAS_ENGINES:  # Keras is there, the engine it was told to use is not
            raise MissingDependencyError(
                f"Keras is installed but its engine {missing!r} is not: Keras needs one of "
                f"{', '.join(KERAS_ENGINES)}. Install one with pip install 'resnet-core[jax]', "
                "'resnet-core[tensorflow]' or 'resnet-core[torch]' and set KERAS_BACKEND to it"
            ) from exc
        raise


def adapter_for(model: object) -> ModuleType:
    """The adapter that owns ``model``.

    Keras is asked first: on Keras's torch engine a ``keras.Model`` is also a ``torch.nn.Module``.
    Only frameworks already imported are asked, since a model cannot come from any other.
    """
    for backend in ("keras", "torch"):
        framework = ADAPTERS[backend][1]
        if framework in sys.modules and load_adapter(backend).owns(model):
            return load_adapter(backend)
    raise InputTypeError(
        f"Expected a model built by resnet_core (a torch.nn.Module or keras.Model). Received: {type(model)!r}"
    )
