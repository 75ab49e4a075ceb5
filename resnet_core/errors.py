"""The errors resnet-core raises on purpose: one base class, so callers (and the CLI) can tell bad input from a bug.

Every error here means "the input is wrong" (a value, a name, a file, a missing extra), never "we are broken".
The command line maps :class:`ResNetCoreError` to exit status 2 with one line on stderr; anything else is an
internal error (exit 1). Each class keeps the builtin base a caller would have caught before (``ValueError``,
``KeyError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ResNetCoreError(Exception):
    """Base of every error resnet-core raises about its input."""


class InputError(ResNetCoreError, ValueError):
    """A value resnet-core cannot accept (an argument, an option, an array)."""


class InputTypeError(ResNetCoreError, TypeError):
    """An argument of the wrong type."""


class UnknownNameError(ResNetCoreError, KeyError):
    """An unknown name: a preset, a layer, a tap."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(ResNetCoreError, ImportError):
    """An optional framework or package is not installed; the message names the extra to install."""


class MissingFileError(ResNetCoreError, FileNotFoundError):
    """A file or folder given by the user does not exist."""


class NotAFileError(ResNetCoreError, IsADirectoryError):
    """A folder where a file was expected."""


class OutputExistsError(ResNetCoreError, FileExistsError):
    """The output exists and replacing it was not asked for."""


class FileAccessError(ResNetCoreError, OSError):
    """The operating system refused a user's file (permissions, a full disk, ...)."""


def user_file_error(exc: OSError, path: object) -> ResNetCoreError:
    """One of ours for a file-system error on a user's path, naming the path; raise it ``from exc``."""
    name = str(path)
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return MissingFileError(f"No such file: {name!r}")
    if isinstance(exc, IsADirectoryError):
        return NotAFileError(f"{name!r} is a directory, not a file")
    if isinstance(exc, FileExistsError):
        return OutputExistsError(f"{name!r} already exists")
    return FileAccessError(f"Cannot access {name!r}: {reason}")


@contextlib.contextmanager
def user_file(path: object) -> Iterator[None]:
    """The IO boundary: a file-system error on the user's ``path`` inside this block becomes one of ours."""
    try:
        yield
    except ResNetCoreError:
        raise
    except OSError as exc:
        raise user_file_error(exc, path) from exc
