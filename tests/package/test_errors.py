"""One error base class: bad input is a ResNetCoreError (CLI exit 2, one line); anything else is a bug (exit 1)."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

import resnet_core as rc
from resnet_core import errors
from resnet_core.cli import main
from resnet_core.testing import random_weights

ROOT = Path(__file__).resolve().parents[2]
# Builtins that say "your input is wrong": raised bare, an internal bug would look like bad input.
INPUT_BUILTINS = {"ValueError", "TypeError", "KeyError", "FileNotFoundError", "FileExistsError", "IsADirectoryError",
                  "NotADirectoryError", "PermissionError", "ImportError", "ModuleNotFoundError", "OSError"}


def _class_ancestors() -> dict[str, set[str]]:
    """Every class defined in the package and the backends (read with ast: nothing is imported), with the
    names of all its ancestors."""
    bases: dict[str, set[str]] = {}
    for path in [*(ROOT / "resnet_core").rglob("*.py"), *(ROOT / "backends").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(
                    b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                    if isinstance(b, ast.Name | ast.Attribute))

    def ancestors(name: str, seen: set[str]) -> set[str]:
        for base in bases.get(name, set()) - seen:
            seen.add(base)
            ancestors(base, seen)
        return seen

    return {name: ancestors(name, set()) for name in bases}


def test_every_error_class_is_ours_and_keeps_a_builtin_base():
    """A new exception class anywhere in the code must be a ResNetCoreError (the CLI's exit 2, one line) and,
    but for the roots, also a specific builtin, so callers' ``except ValueError`` / ``KeyError`` keep working."""
    errors_found = {name: up for name, up in _class_ancestors().items() if "Exception" in up or name == "Exception"}
    assert {"SpecError", "WeightsFileError", "UnknownNameError", "MissingFileError"} <= errors_found.keys()
    for name, up in errors_found.items():
        assert name == "ResNetCoreError" or "ResNetCoreError" in up, f"{name} is not a ResNetCoreError"
        specific = {b for b in up if b in INPUT_BUILTINS or b in ("LookupError", "RuntimeError")}
        assert name in ("ResNetCoreError", "UserError") or specific, f"{name} has no builtin base but Exception"


def test_unknown_preset_is_a_key_error_with_a_plain_message():
    with pytest.raises(KeyError) as info:
        rc.get_spec("resnet5O")
    assert isinstance(info.value, rc.ResNetCoreError)
    assert str(info.value).startswith("Unknown ResNet spec 'resnet5O'. Known specs: ")


def test_file_system_errors_on_a_user_path_become_ours():
    made = errors.user_file_error(PermissionError(errno.EACCES, "Permission denied"), "/data/w.pth")
    assert isinstance(made, errors.FileAccessError) and isinstance(made, OSError)
    assert str(made) == "Cannot access '/data/w.pth': Permission denied"
    with pytest.raises(errors.MissingFileError, match="No such file: 'x.pth'"), errors.user_file("x.pth"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")


def test_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "missing.safetensors", "out.safetensors"]) == 2
    err = capsys.readouterr().err
    assert err == "resnet-core convert: error: No such file: 'missing.safetensors'\n"
    assert not (tmp_path / "out.safetensors").exists()
    assert main(["info", "w.safetensors", "--arch", "resnet5O"]) == 2  # unknown preset: checked before the file
    assert capsys.readouterr().err.count("\n") == 1


def test_an_os_error_reading_a_user_file_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    rc.write_weights(tmp_path / "w.safetensors", random_weights("tiny_resnext"), "tiny_resnext")
    from resnet_core.io import formats

    def refuse(self, path):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(formats.Format, "open", refuse)
    assert main(["info", str(tmp_path / "w.safetensors")]) == 2
    assert capsys.readouterr().err == (f"resnet-core info: error: Cannot access '{tmp_path / 'w.safetensors'}': "
                                       "Permission denied\n")


def test_an_internal_bug_is_not_reported_as_bad_input(capsys, monkeypatch):
    from resnet_core.commands import list_specs

    def broken(spec):
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setattr(list_specs, "make_plan", broken)
    monkeypatch.delenv("RESNET_CORE_DEBUG", raising=False)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("resnet-core list: internal error (ValueError): a bug, not the user's fault.")
    assert err.count("\n") == 1


def _bare_input_raises(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in INPUT_BUILTINS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} raise {exc.id}")
    return found


def test_no_bare_builtin_is_raised_for_input():
    """Bad input raises one of resnet_core.errors (or a subclass); an internal check raises RuntimeError."""
    files = sorted([*(ROOT / "resnet_core").rglob("*.py"), *(ROOT / "backends").rglob("*.py")])
    assert len(files) > 20
    found = [hit for f in files for hit in _bare_input_raises(f)]
    assert not found, "raise an error of resnet_core.errors for bad input (RuntimeError for a bug): " + str(found)
