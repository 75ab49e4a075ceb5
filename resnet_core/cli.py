"""The ``resnet-core`` command line: one subcommand per module in :mod:`resnet_core.commands`.

Exit status: 0 on success, 2 on bad input (a :class:`~resnet_core.errors.ResNetCoreError`: one line on stderr,
no traceback), 1 on an internal error (any other exception).
Set ``RESNET_CORE_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ResNetCoreError
from .quiet import filtered_native_stderr, set_quiet_defaults

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
COMMAND_MODULES = (
    "resnet_core.commands.list_specs",
    "resnet_core.commands.parity",
    "resnet_core.commands.convert",
    "resnet_core.commands.info",
    "resnet_core.commands.summary",
    "resnet_core.commands.export",
    "resnet_core.commands.bench",
)


class UserError(ResNetCoreError):
    """Bad input from the user: reported as one line, exit status 2."""


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


# Library errors name Python arguments; on the command line each reads as the flag that sets it.
FLAG_ADVICE = (
    (re.compile(r"\boverwrite=True\b"), "--force"),
    (re.compile(r"\bspec=NAME\b"), "--arch NAME|SPEC.json"),
    (re.compile(r"\bquantize=(\S+)"), r"--quantize \1"),
    (re.compile(r"\bcalibration=(\S*)"), r"--calibration \1"),
)


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    for python, flag in FLAG_ADVICE:
        text = python.sub(flag, text)
    return text.replace("--calibration  ", "--calibration ")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. ``argv`` None means the real command line: then TensorFlow's C++ start-up lines are
    also filtered out of stderr (in-process callers, such as tests, capture stderr themselves)."""
    filtering = set_quiet_defaults() and argv is None
    with filtered_native_stderr() if filtering else contextlib.nullcontext():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ResNetCoreError as exc:  # bad input; anything else is our bug (exit 1)
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
