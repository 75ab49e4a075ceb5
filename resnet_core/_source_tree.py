"""Make ``resnet_core.backends`` importable from a source checkout, and nothing else.

The adapters live in the checkout's top-level ``backends/`` folder and install as
``resnet_core.backends`` (``package-dir`` in pyproject.toml; editable installs honour it). When Python
finds this checkout's ``resnet_core`` before any installed copy (a script or subprocess started in the
checkout's root, or ``PYTHONPATH`` set to it), that one name is resolved to the checkout's ``backends/``
folder by a finder that answers for ``resnet_core.backends`` alone: no other top-level folder becomes
part of the package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

NAME = f"{__package__}.backends"
_package_dir = os.path.dirname(os.path.abspath(__file__))
_backends = os.path.join(os.path.dirname(_package_dir), "backends")


class _CheckoutBackends(importlib.abc.MetaPathFinder):
    """Finds ``resnet_core.backends`` in the checkout holding this ``resnet_core`` (before an editable
    install's finder, which may point at another checkout)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != NAME:
            return None
        return importlib.util.spec_from_file_location(fullname, os.path.join(_backends, "__init__.py"),
                                                      submodule_search_locations=[_backends])


def _install() -> None:
    inside = os.path.isdir(os.path.join(_package_dir, "backends"))  # an installed wheel: nothing to do
    if inside or not os.path.isfile(os.path.join(_backends, "torch_adapter.py")):
        return
    if not any(isinstance(finder, _CheckoutBackends) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutBackends())


_install()
