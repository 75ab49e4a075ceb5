"""One error base class: bad input is a ResNetCoreError (CLI exit 2, one line); anything else is a bug (exit 1)."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

import resnet_core as rc
from resnet_core import errors
from resnet_core.cli import UserError, main
from resnet_core.io.formats import FormatVersionError, WeightsFileError
from resnet_core.io.infer import InferenceError
from resnet_core.testing import random_weights

ROOT = Path(__file__).resolve().parents[1]
# Builtins that say "your input is wrong": raised bare, an internal bug would look like bad input.
INPUT_BUILTINS = {"ValueError", "TypeError", "KeyError", "FileNotFoundError", "FileExistsError", "IsADirectoryError",
                  "NotADirectoryError", "PermissionError", "ImportError", "ModuleNotFoundError", "OSError"}


@pytest.mark.parametrize("cls, builtin", [
    (rc.SpecError, ValueError), (rc.PeerError, ValueError), (rc.WeightsMismatchError, ValueError),
    (InferenceError, ValueError), (WeightsFileError, ValueError), (FormatVersionError, ValueError),
    (errors.InputError, ValueError), (errors.InputTypeError, TypeError), (errors.UnknownNameError, KeyError),
    (errors.MissingDependencyError, ImportError), (errors.MissingFileError, FileNotFoundError),
    (errors.NotAFileError, IsADirectoryError), (errors.OutputExistsError, FileExistsError),
    (errors.FileAccessError, OSError), (UserError, Exception),
])
def test_every_error_is_ours_and_keeps_its_builtin_base(cls, builtin):
    assert issubclass(cls, rc.ResNetCoreError) and issubclass(cls, builtin)


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
