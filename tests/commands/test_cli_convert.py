"""``resnet-core convert``: exit 0 on success, 2 and one line on bad input, 1 on internal error; no leftovers."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.io import read_weights, write_weights
from resnet_core.io.formats import TensorInfo
from resnet_core.io.safetensors_io import write as write_safetensors
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def raw_safetensors(path, tensors: dict) -> None:
    infos = {k: TensorInfo(v.shape, v.dtype) for k, v in tensors.items()}
    write_safetensors(path, rc.get_spec(SPEC), infos, tensors.__getitem__, lambda n: None)


def one_error_line(capsys, code: int, status: int = 2) -> str:
    out = capsys.readouterr()
    assert code == status
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err
    return lines[0]


@pytest.fixture
def src(tmp_path):
    return write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)


def test_success_prints_a_summary_and_writes_the_file(tmp_path, src, capsys):
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"wrote {tmp_path / 'out.safetensors'}: tiny_resnext, 102 tensors, float32, 1.5 MB")
    assert out.err == ""
    assert (tmp_path / "out.safetensors").read_bytes() == src.read_bytes()
    assert main(["convert", "-q", str(src), str(tmp_path / "q.safetensors")]) == 0
    assert capsys.readouterr().out == ""


def test_force_replaces_and_dtype_casts(tmp_path, src, capsys):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")
    assert main(["convert", str(src), str(out), "--force", "--dtype", "float16"]) == 0
    _, back = read_weights(out)
    assert {v.dtype for v in back.values()} == {np.dtype("float16")}


def test_an_inferred_spec_is_announced_on_stderr(tmp_path, capsys):
    raw_safetensors(tmp_path / "plain.safetensors", random_weights("resnet18"))  # metadata says tiny; strip it
    raw = (tmp_path / "plain.safetensors").read_bytes()
    import json
    import struct

    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    del header["__metadata__"]
    blob = json.dumps(header).encode()
    (tmp_path / "plain.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])
    assert main(["convert", str(tmp_path / "plain.safetensors"), str(tmp_path / "out.safetensors")]) == 0
    err = capsys.readouterr().err
    assert err == "resnet-core convert: inferred from tensor names and shapes: preset resnet18\n"


def _bad_inputs(tmp_path, src):
    """(argv, text the single error line must contain), one per kind of bad input."""
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(src.read_bytes()[:1000])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    keys = random_weights(SPEC)
    keys.pop("fc.bias")
    keys["extra.weight"] = np.zeros(2, np.float32)
    raw_safetensors(tmp_path / "keys.safetensors", keys)
    ints = random_weights(SPEC)
    ints["fc.bias"] = np.arange(10, dtype=np.int32)
    raw_safetensors(tmp_path / "ints.safetensors", ints)
    (tmp_path / "exists.safetensors").write_bytes(b"keep me")
    (tmp_path / "model.tflite").write_bytes(b"tflite")
    out = str(tmp_path / "out.safetensors")
    return {
        "missing file": (["convert", str(tmp_path / "nope.pth"), out], "No such file"),
        "truncated": (["convert", str(truncated), out], "truncated or corrupt"),
        "corrupt": (["convert", str(corrupt), out], "not a valid safetensors file"),
        "wrong architecture": (["convert", str(src), out, "--arch", "resnet18"],
                               "conv1.weight has shape (16, 3, 7, 7) in the file but resnet18 expects (64, 3, 7, 7)"),
        "missing and unexpected keys": (["convert", str(tmp_path / "keys.safetensors"), out],
                                        "missing 1 key(s): fc.bias; unexpected 1 key(s): extra.weight"),
        "non-float tensor": (["convert", str(tmp_path / "ints.safetensors"), out],
                             "Weight 'fc.bias' has dtype int32; expected a floating-point tensor"),
        "unknown input format": (["convert", str(tmp_path / "model.tflite"), out], "Known extensions: .safetensors"),
        "unknown output format": (["convert", str(src), str(tmp_path / "out.npz")], "Unknown weights format"),
        "existing output": (["convert", str(src), str(tmp_path / "exists.safetensors")],
                            "already exists; pass --force"),
        "same file": (["convert", str(src), str(src), "--force"], "Input and output are the same file"),
        "unknown arch": (["convert", str(src), out, "--arch", "resnet9000"], "Unknown ResNet spec 'resnet9000'"),
        "missing spec file": (["convert", str(src), out, "--arch", str(tmp_path / "spec.json")], "No such file: "),
    }


KINDS = ["missing file", "truncated", "corrupt", "wrong architecture", "missing and unexpected keys",
         "non-float tensor", "unknown input format", "unknown output format", "existing output", "same file",
         "unknown arch", "missing spec file"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(tmp_path, src, capsys, kind):
    argv, expected = _bad_inputs(tmp_path, src)[kind]
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}
    line = one_error_line(capsys, main(argv))
    assert line.startswith("resnet-core convert: error: ")
    assert expected in line
    assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == before


def test_an_internal_error_exits_1_with_one_line(tmp_path, src, capsys, monkeypatch):
    from resnet_core.io import safetensors_io

    def broken(*args, **kwargs):
        raise RuntimeError("the writer broke")

    monkeypatch.setattr(safetensors_io, "write", broken)
    line = one_error_line(capsys, main(["convert", str(src), str(tmp_path / "out.safetensors")]), status=1)
    assert line == ("resnet-core convert: internal error (RuntimeError): the writer broke. "
                    "Rerun with RESNET_CORE_DEBUG=1 for a traceback.")
    assert listing(tmp_path) == ["m.safetensors"]


@pytest.mark.parametrize("command", ["convert", "info"])
def test_help_has_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"resnet-core {command} " in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"resnet-core {rc.__version__}"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_only_and_not_when_quiet(tmp_path, src, monkeypatch, quiet):
    from resnet_core.io import progress

    monkeypatch.setattr(progress, "DELAY", 0.0)  # as if the conversion took over a second
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["convert", str(src), str(tmp_path / "out.safetensors")] + (["--quiet"] if quiet else [])
    assert main(argv) == 0
    drawn = terminal.getvalue()
    if quiet:
        assert drawn == ""
    else:
        assert drawn.startswith("\r") and "100% " in drawn and drawn.endswith("\n")


def test_no_progress_bar_off_a_terminal(tmp_path, src, monkeypatch, capsys):
    from resnet_core.io import progress

    monkeypatch.setattr(progress, "DELAY", 0.0)
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 0
    assert "\r" not in capsys.readouterr().err


def test_the_installed_command(tmp_path, src):
    """The real entry point, in a fresh interpreter: exit statuses and stderr as a shell sees them."""
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "resnet_core.cli", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    ok = run("convert", str(src), str(tmp_path / "out.safetensors"))
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    bad = run("convert", str(tmp_path / "nope.pth"), str(tmp_path / "x.safetensors"))
    assert bad.returncode == 2
    assert bad.stderr.startswith("resnet-core convert: error: No such file") and bad.stderr.count("\n") == 1
    assert listing(tmp_path) == ["m.safetensors", "out.safetensors"]


@pytest.mark.torch
@pytest.mark.keras
def test_the_readme_examples(tmp_path, capsys, need):
    """pth -> weights.h5 with --arch, weights.h5 -> safetensors with the spec read back, safetensors -> keras."""
    import torch

    weights = random_weights(SPEC)
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, tmp_path / "m.pth")  # a bare state_dict
    steps = [["m.pth", "m.weights.h5", "--arch", SPEC], ["m.weights.h5", "m.safetensors"],
             ["m.safetensors", "m.keras"], ["m.keras", "back.pth"]]
    for step in steps:
        argv = ["convert", *(str(tmp_path / a) if "." in a else a for a in step)]
        assert main(argv) == 0, capsys.readouterr().err
    spec, back = read_weights(tmp_path / "back.pth")
    assert spec == rc.get_spec(SPEC)
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.tobytes() for k, v in weights.items()}
