"""``--json`` and ``--plot`` of the commands that print a report (parity, bench): checked before the work starts,
written after it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, MissingFileError


def check_report_files(args: argparse.Namespace) -> None:
    """Fail fast (exit 2) on an output folder that does not exist or a plot without matplotlib."""
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not Path(path).resolve().parent.is_dir():
            raise MissingFileError(f"{option}: the folder of {path!r} does not exist")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'resnet-core[plot]'")


def print_report(report: Any, args: argparse.Namespace) -> None:
    """The report's table on stdout, then the JSON and PNG asked for."""
    print(report.table())
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(args.plot)
        print(f"wrote {args.plot}")
