"""The resolver's rule, framework-free: a bare name is a preset, never a path; a path is written as a path.

Architectures (presets, specs, spec .json) and canonical .npz arrays need numpy alone; the weight-file formats
are covered by test_resolve_matrix.py (they need the io extra, installed with the frameworks).
"""

from __future__ import annotations

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.errors import InputError, MissingFileError, UnknownNameError
from resnet_core.sources import kind_of, resolve
from resnet_core.sources.resolve import written_as_path
from resnet_core.testing import random_weights
from resnet_core.weights_info import preset_info

TINY = rc.get_spec("tiny_resnext").replace(num_classes=5)


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder holding a spec .json, an .npz of canonical arrays, and a folder and a file named like
    the preset tiny_resnext and like no preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(TINY.to_json())
    np.savez(tmp_path / "tiny.npz", **random_weights(TINY, seed=2))
    (tmp_path / "tiny_resnext").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "notes").write_text("not a model")
    return tmp_path


@pytest.mark.parametrize("text,is_path", [
    ("resnet50", False), ("./resnet50", True), ("/abs/resnet50", True), ("sub/resnet50", True),
    ("resnet50.safetensors", True), ("spec.json", True), ("..", True), ("resnet50_gn", False),
])
def test_a_path_is_written_as_a_path(text, is_path):
    assert written_as_path(text) is is_path


def test_each_kind_is_recognised(here):
    assert kind_of(TINY) == ("spec", TINY)
    assert kind_of("tiny_resnext") == ("preset", "tiny_resnext")
    assert kind_of("tiny.json")[0] == "spec-json"
    assert kind_of(here / "tiny.json")[0] == "spec-json"  # a PathLike is always a path
    assert kind_of("tiny.npz")[0] == "arrays"
    assert kind_of("./tiny_resnext")[0] == "folder"
    assert kind_of("local-dir:tiny_resnext")[0] == "folder"
    assert kind_of("torchvision:resnet18.DEFAULT")[0] == "torchvision"


def test_a_folder_named_like_a_preset_does_not_shadow_it(here):
    found = resolve("tiny_resnext")
    assert (found.kind, found.spec, found.weights) == ("preset", rc.get_spec("tiny_resnext"), None)
    assert rc.summary("tiny_resnext").params == rc.make_plan(rc.get_spec("tiny_resnext")).num_params
    assert rc.info_of("tiny_resnext") == preset_info("tiny_resnext")


@pytest.mark.parametrize("name", ["mine", "notes"])
def test_a_bare_name_on_disk_that_is_no_preset_suggests_a_path(here, name):
    with pytest.raises(InputError, match=f"write it as a path: './{name}'"):
        resolve(name)
    with pytest.raises(InputError, match=f"'./{name}'"):
        rc.summary(name)


def test_a_bare_name_nowhere_lists_the_presets(here):
    with pytest.raises(UnknownNameError, match="Unknown ResNet spec 'resnet51'. Known specs: .*resnet50"):
        resolve("resnet51")


@pytest.mark.parametrize("text", ["./missing", "missing.safetensors", "sub/missing", "local-dir:missing"])
def test_a_missing_path_names_it(here, text):
    with pytest.raises(MissingFileError, match="missing"):
        resolve(text)


@pytest.mark.parametrize("text,hint", [("foo:bar", None), ("hf_hub:org/name", "hf-hub:"),
                                       ("torchvison:resnet18.DEFAULT", "torchvision:")])
def test_an_unknown_prefix_is_an_input_error(here, text, hint, capsys):
    with pytest.raises(InputError, match="Unknown source prefix") as caught:
        resolve(text)
    if hint:
        assert f"did you mean {hint!r}" in str(caught.value)
    assert main(["summary", text]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Unknown source prefix" in err


def test_an_unknown_extension_names_the_known_ones(here):
    (here / "model.bin").write_bytes(b"")
    with pytest.raises(InputError, match=r"Unknown weights format for 'model.bin'.*\.safetensors"):
        resolve("model.bin")


def test_spec_json_is_an_architecture_everywhere(here, capsys):
    assert resolve("tiny.json").spec == TINY
    assert rc.summary("tiny.json").params == rc.make_plan(TINY).num_params
    assert rc.info_of("tiny.json") == preset_info("tiny_resnext")
    with pytest.raises(InputError, match="an architecture"):
        rc.read_weights("tiny.json")
    assert main(["info", "tiny.json"]) == 2
    assert "resnet-core summary" in capsys.readouterr().err


def test_npz_arrays_infer_their_spec_or_take_the_one_given(here):
    weights = random_weights(TINY, seed=2)
    spec, read = rc.read_weights("tiny.npz")
    assert spec == TINY and all(np.array_equal(read[k], weights[k]) for k in weights)
    assert rc.read_weights("tiny.npz", spec="tiny.json").spec == TINY
    assert resolve("tiny.npz").spec_source == "inferred"
    assert rc.summary("tiny.npz").params == rc.make_plan(TINY).num_params


def test_spec_argument_must_be_an_architecture(here):
    with pytest.raises(InputError, match="Expected an architecture"):
        rc.read_weights("tiny.npz", spec="tiny.npz")


def test_summary_old_flag_spelling_still_works(here, capsys):
    assert main(["summary", "tiny.json", "--input-size", "65x77", "--json"]) == 0
    assert '"input_size": [65, 77]' in capsys.readouterr().out
    from resnet_core.cli import make_parser

    helptext = make_parser()._subparsers._group_actions[0].choices["summary"].format_help()
    assert "--size" in helptext and "--input-size" not in helptext


def test_library_errors_name_arguments_and_the_command_line_names_flags(here, capsys):
    with pytest.raises(InputError, match=r"quantize=int8 needs calibration=IMAGES.npy"):
        rc.export("tiny_resnext", "m.onnx", quantize="int8")
    assert main(["export", "tiny_resnext", "m.onnx", "--quantize", "int8"]) == 2
    assert "--quantize int8 needs --calibration IMAGES.npy" in capsys.readouterr().err
