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
    """Resolve the backend by the documented precedence.

    The ``backend`` argument wins, then the innermost :func:`use_backend` block, then the
    ``RESNET_CORE_BACKEND`` environment variable, then ``"torch"``.

    Args:
        backend: An explicit choice, ``"torch"`` or ``"keras"`` (case and surrounding spaces ignored).

    Returns:
        The backend's name, ``"torch"`` or ``"keras"``.

    Raises:
        InputError: ``backend`` or the environment variable names no backend.

    Example:
        >>> import resnet_core as rc
        >>> rc.get_backend(" Keras ")
        'keras'
        >>> with rc.use_backend("torch"):
        ...     rc.get_backend()
        'torch'
    """
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
    """Use ``backend`` inside the block, for this thread or task only.

    Leaving the block restores the choice in force before it (blocks nest).

    Args:
        backend: ``"torch"`` or ``"keras"`` (case and surrounding spaces ignored).

    Yields:
        The backend's normalised name.

    Raises:
        InputError: ``backend`` names no backend.

    Example:
        >>> import resnet_core as rc
        >>> with rc.use_backend("keras") as name:
        ...     name, rc.get_backend()
        ('keras', 'keras')
        >>> with rc.use_backend("theano"):
        ...     pass
        Traceback (most recent call last):
        ...
        resnet_core.errors.InputError: Unknown resnet_core backend 'theano' (from use_backend()). Expected ...
    """
    name = _validate(backend, "use_backend()")
    token = _current.set(name)
    try:
        yield name
    finally:
        _current.reset(token)
