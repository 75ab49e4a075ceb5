"""Which adapter builds a model: argument, then ``use_backend``, then ``RESNET_CORE_BACKEND``, then torch."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from .errors import InputError

BACKENDS = ("torch", "keras")
DEFAULT_BACKEND = "torch"
ENV_VAR = "RESNET_CORE_BACKEND"

# A ContextVar, not a thread-local: each thread and asyncio task sees its own value, and leaving the
# context manager restores exactly what was there before (reset by token), not a global default.
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("resnet_core_backend", default=None)


def _validate(name: object, source: str) -> str:
    if isinstance(name, str) and name.strip().lower() in BACKENDS:
        return name.strip().lower()
    raise InputError(f"Unknown resnet_core backend {name!r} (from {source}). Expected one of {BACKENDS}")


def get_backend(backend: str | None = None) -> str:
    """Resolve the backend by the documented precedence."""
    if backend is not None:
        return _validate(backend, "the backend= argument")
    current = _current.get()
    if current is not None:
        return current
    env = os.environ.get(ENV_VAR)
    if env:
        return _validate(env, f"the {ENV_VAR} environment variable")
    return DEFAULT_BACKEND


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[str]:
    """Use ``backend`` inside the block, for this thread or task only."""
    name = _validate(backend, "use_backend()")
    token = _current.set(name)
    try:
        yield name
    finally:
        _current.reset(token)
