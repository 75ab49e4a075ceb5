"""Bad input gets one clear error naming the problem, and nothing is lost: no partial file, no overwritten input."""

from __future__ import annotations

import os

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io import WeightsFileError, convert, read_weights, write_weights
from resnet_core.io.formats import TensorInfo
from resnet_core.io.safetensors_io import SafetensorsReader
from resnet_core.io.safetensors_io import write as write_safetensors
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"
FORMATS = {
    ".safetensors": [],
    ".pth": [pytest.mark.torch],
    ".weights.h5": [pytest.mark.keras],
    ".keras": [pytest.mark.keras],
}


def by_format():
    return [pytest.param(ext, marks=m, id=ext.lstrip(".")) for ext, m in FORMATS.items()]


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def write_raw_safetensors(path, tensors: dict) -> None:
    """A safetensors file holding exactly ``tensors``, unchecked (as another tool could write it)."""
    infos = {k: TensorInfo(v.shape, v.dtype) for k, v in tensors.items()}
    write_safetensors(path, rc.get_spec(SPEC), infos, tensors.__getitem__, lambda n: None)


@pytest.mark.parametrize("ext", by_format())
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_truncated_or_corrupt_files_are_refused_and_nothing_is_written(tmp_path, ext, damage):
    path = write_weights(tmp_path / f"m{ext}", random_weights(SPEC), SPEC)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(len(raw)))
    before = listing(tmp_path)
    with pytest.raises(WeightsFileError) as info:
        convert(path, tmp_path / "out.safetensors")
    assert str(path) in str(info.value)
    assert any(word in str(info.value) for word in ("truncated", "corrupt", "not a", "Refused"))
    assert listing(tmp_path) == before


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file: '.*nope.safetensors'"):
        read_weights(tmp_path / "nope.safetensors")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_weights(tmp_path / "d.safetensors")


def test_unknown_formats_list_the_known_extensions(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"Unknown weights format for '.*m.tflite'.*\.safetensors, \.pth, \.pt, "
                                         r"\.weights\.h5, \.keras"):
        read_weights(tmp_path / "m.tflite")
    src = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    with pytest.raises(ValueError, match=r"must end in \.weights\.h5"):
        convert(src, tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_wrong_architecture_names_the_first_mismatch_and_both_shapes(tmp_path):
    src = write_weights(tmp_path / "m.safetensors", random_weights("resnet18"), "resnet18")
    with pytest.raises(rc.WeightsMismatchError, match=r"does not fit resnet34 \(spec resnet34 given\): "
                                                      r"missing 80 key\(s\): layer1\.2\.conv1\.weight"):
        convert(src, tmp_path / "out.safetensors", spec="resnet34")
    with pytest.raises(rc.WeightsMismatchError, match=r"conv1\.weight has shape \(64, 3, 7, 7\) in the file but "
                                                      r"tiny_resnext expects \(16, 3, 7, 7\)"):
        convert(src, tmp_path / "out.safetensors", spec=SPEC)
    assert listing(tmp_path) == ["m.safetensors"]


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    weights = random_weights(SPEC)
    weights.pop("fc.bias")
    weights.pop("layer1.0.bn1.running_var")
    weights["head.extra.weight"] = np.zeros(3, np.float32)
    write_raw_safetensors(tmp_path / "m.safetensors", weights)
    with pytest.raises(rc.WeightsMismatchError, match=r"missing 2 key\(s\): layer1\.0\.bn1\.running_var, fc\.bias; "
                                                      r"unexpected 1 key\(s\): head\.extra\.weight") as info:
        convert(tmp_path / "m.safetensors", tmp_path / "out.safetensors")
    assert info.value.missing == ["layer1.0.bn1.running_var", "fc.bias"]
    assert info.value.unexpected == ["head.extra.weight"]


def test_non_float_tensors_are_refused_by_name(tmp_path):
    weights = random_weights(SPEC)
    weights["layer1.0.bn1.running_mean"] = np.arange(weights["layer1.0.bn1.running_mean"].size, dtype=np.int64)
    write_raw_safetensors(tmp_path / "m.safetensors", weights)
    with pytest.raises(TypeError, match=r"m\.safetensors: Weight 'layer1\.0\.bn1\.running_mean' has dtype int64; "
                                        "expected a floating-point tensor"):
        convert(tmp_path / "m.safetensors", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(TypeError, match="has dtype int64"):
        write_weights(tmp_path / "w.safetensors", weights, SPEC)
    assert not (tmp_path / "w.safetensors").exists()


def test_an_existing_output_is_kept_unless_forced(tmp_path):
    src = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        convert(src, out)
    assert out.read_bytes() == b"precious"
    convert(src, out, overwrite=True)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(FileExistsError):
        write_weights(out, random_weights(SPEC), SPEC)


def test_input_is_never_the_output(tmp_path):
    src = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    raw = src.read_bytes()
    os.link(src, tmp_path / "alias.safetensors")
    for target in (src, tmp_path / "alias.safetensors"):
        with pytest.raises(ValueError, match="Input and output are the same file"):
            convert(src, target, overwrite=True)
    assert src.read_bytes() == raw


def test_missing_output_directory(tmp_path):
    src = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    with pytest.raises(FileNotFoundError, match="Output directory .*nowhere' does not exist"):
        convert(src, tmp_path / "nowhere" / "out.safetensors")


@pytest.mark.parametrize("error", [WeightsFileError("disk read failed"), KeyboardInterrupt()],
                         ids=["error", "interrupt"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch, error, overwrite):
    src = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    out = tmp_path / "out.safetensors"
    if overwrite:
        out.write_bytes(b"precious")
    before = listing(tmp_path)
    real, calls = SafetensorsReader.read, []

    def failing(self, name):
        calls.append(name)
        if len(calls) == 40:  # well into the output file
            raise error
        return real(self, name)

    monkeypatch.setattr(SafetensorsReader, "read", failing)
    with pytest.raises(type(error)):
        convert(src, out, overwrite=overwrite)
    assert len(calls) >= 40
    assert listing(tmp_path) == before
    assert not overwrite or out.read_bytes() == b"precious"


def test_outputs_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
