"""Outputs appear whole or not at all: written under a temporary name beside the target, then renamed."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import MissingFileError, NotAFileError, OutputExistsError


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse before any work is done: a missing directory, a directory as target, an existing file."""
    parent = path.parent
    if not parent.is_dir():
        raise MissingFileError(f"Output directory {str(parent)!r} does not exist")
    if path.is_dir():
        raise NotAFileError(f"Output {str(path)!r} is a directory")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"Output {str(path)!r} already exists; pass overwrite=True to replace it")


def _temporary_name(path: Path, suffix: str) -> Path:
    """A free name beside ``path``, not created: the writer creates the file.

    Creating it here (as mkstemp does) would make the writer truncate an existing file, and ext4 then
    flushes it to disk on close (its replace-via-truncate safeguard), a third of a second for 500 MB.
    """
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(6)}.partial{suffix}"
        if not candidate.exists():
            return candidate


@contextlib.contextmanager
def atomic_output(path: Path, overwrite: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success it becomes ``path``, on any failure it goes.

    ``suffix`` ends the temporary name (Keras insists on ``.keras``). Without ``overwrite`` the final
    step is a hard link, which fails rather than replace a file that appeared meanwhile.
    """
    path = Path(path)
    check_output(path, overwrite)
    tmp = _temporary_name(path, suffix)
    try:
        yield tmp
        if not tmp.exists():  # pragma: no cover - a writer that wrote nothing
            raise RuntimeError(f"The writer did not create {tmp}")
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"Output {str(path)!r} appeared while writing; not replaced") from None
            except OSError:  # a file system without hard links
                if path.exists():
                    raise OutputExistsError(f"Output {str(path)!r} appeared while writing; not replaced") from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_folder_output(path: Path, overwrite: bool) -> None:
    """Refuse a folder output before any work: a missing parent, a file in the way, an existing folder."""
    if not path.parent.is_dir():
        raise MissingFileError(f"Output directory {str(path.parent)!r} does not exist")
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"Output {str(path)!r} exists and is not a folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"Output {str(path)!r} already exists; pass overwrite=True to replace it")


@contextlib.contextmanager
def atomic_folder(path: Path, overwrite: bool = False) -> Iterator[Path]:
    """Like :func:`atomic_output` for a folder: the writer fills a temporary folder beside ``path``, which is
    renamed into place when complete (an existing one, with ``overwrite``, is moved aside first, then removed)."""
    import shutil

    path = Path(path)
    check_folder_output(path, overwrite)
    tmp = _temporary_name(path, "")
    try:
        yield tmp
        if not tmp.is_dir():  # pragma: no cover - a writer that wrote nothing
            raise RuntimeError(f"The writer did not create {tmp}")
        if path.exists():
            if not overwrite:
                raise OutputExistsError(f"Output {str(path)!r} appeared while writing; not replaced")
            old = _temporary_name(path, ".old")
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
