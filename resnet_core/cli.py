"""The ``resnet-core`` command line: one subcommand per module in :mod:`resnet_core.commands`.

Exit status: 0 on success, 2 on bad input (one line on stderr, no traceback), 1 on an internal error.
Set ``RESNET_CORE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
COMMAND_MODULES = (
    "resnet_core.commands.list_specs",
    "resnet_core.commands.parity",
    "resnet_core.commands.convert",
    "resnet_core.commands.info",
    "resnet_core.commands.summary",
)


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


# Errors that mean "your input is wrong", not "we are broken".
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
    PermissionError, ImportError,
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-core",
        description="One ResNet spec, compiled to PyTorch and Keras 3, with lossless weight conversion.",
        epilog="Example: resnet-core list",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        if os.environ.get("RESNET_CORE_DEBUG"):
            raise
        print(f"resnet-core {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resnet-core: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if os.environ.get("RESNET_CORE_DEBUG"):
            raise
        print(f"resnet-core {args.command}: internal error ({type(exc).__name__}): {exc}. "
              "Rerun with RESNET_CORE_DEBUG=1 for a traceback.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
