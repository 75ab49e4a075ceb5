"""The canonical safetensors file: its bytes, metadata, versioning and validation. numpy only, no framework."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.io import FORMAT_VERSION, FormatVersionError, WeightsFileError, read_weights, write_weights
from resnet_core.testing import random_weights

SPEC = "tiny_resnext"
# ml_dtypes (bfloat16) and the reference safetensors package are not in the framework-free core env; the
# Keras stack brings ml_dtypes, and the framework envs install the io extra: run those tests there.
needs_io_extra = pytest.mark.keras


def header(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def rewrite(path, header_dict: dict, data: bytes) -> None:
    blob = json.dumps(header_dict).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_round_trip_is_bit_exact_and_keeps_the_spec(tmp_path, dtype):
    weights = random_weights(SPEC, dtype=dtype)
    path = write_weights(tmp_path / "m.safetensors", weights, SPEC)
    spec, back = read_weights(path)
    assert spec == rc.get_spec(SPEC) and spec.name == SPEC
    assert_same(back, weights)
    assert all(isinstance(v, np.ndarray) and v.flags.owndata and v.flags.writeable for v in back.values())


def test_read_weights_can_cast(tmp_path):
    weights = random_weights(SPEC)
    _, back = read_weights(write_weights(tmp_path / "m.safetensors", weights, SPEC), dtype="float16")
    assert {k: v.tobytes() for k, v in back.items()} == {k: v.astype(np.float16).tobytes() for k, v in weights.items()}


@needs_io_extra
def test_bfloat16_round_trip(tmp_path, need):
    ml_dtypes = need("io", "ml_dtypes")
    weights = random_weights(SPEC, dtype=ml_dtypes.bfloat16)
    path = write_weights(tmp_path / "m.safetensors", weights, SPEC)
    _, back = read_weights(path)
    assert_same(back, weights)
    head, _ = header(path)
    assert {entry["dtype"] for k, entry in head.items() if k != "__metadata__"} == {"BF16"}


def test_file_layout(tmp_path):
    """Header: spec and version in the metadata, plan order, contiguous offsets; data: the raw bytes."""
    weights = random_weights(SPEC)
    path = write_weights(tmp_path / "m.safetensors", weights, SPEC)
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert n % 8 == 0
    head, data = header(path)
    meta = head.pop("__metadata__")
    assert meta["resnet_core.format_version"] == str(FORMAT_VERSION)
    assert rc.ResNetSpec.from_json(meta["resnet_core.spec"]).to_dict() == rc.get_spec(SPEC).to_dict()
    assert list(head) == [p.name for p in rc.make_plan(rc.get_spec(SPEC)).params]
    offset = 0
    for name, entry in head.items():
        assert entry["dtype"] == "F32"
        assert tuple(entry["shape"]) == weights[name].shape
        assert entry["data_offsets"] == [offset, offset + weights[name].nbytes]
        offset += weights[name].nbytes
    assert data == b"".join(weights[k].tobytes() for k in head)


def test_every_spec_field_round_trips(tmp_path):
    fields = rc.get_spec(SPEC).to_dict()
    fields.update(name="my_net", bn_eps=1e-3, bn_momentum=0.25, zero_init_residual=True, num_classes=7)
    for key, value in (("stem", "deep"), ("downsample", "avg"), ("attention", "se"), ("output_stride", 16),
                       ("stem_pool", False)):
        if key in fields:  # the newer spec options, when this build has them
            fields[key] = value
    spec = rc.ResNetSpec.from_dict(fields)
    path = write_weights(tmp_path / "m.safetensors", random_weights(spec), spec)
    back, _ = read_weights(path)
    assert back.to_dict() == spec.to_dict()


@needs_io_extra
def test_the_reference_library_reads_our_files(tmp_path, need):
    stn = need("io", "safetensors.numpy")
    ml_dtypes = need("io", "ml_dtypes")
    safetensors = need("io", "safetensors")
    for dtype in ("float32", "float16", ml_dtypes.bfloat16):
        weights = random_weights(SPEC, dtype=dtype)
        path = write_weights(tmp_path / f"m_{np.dtype(dtype).name}.safetensors", weights, SPEC)
        loaded = stn.load_file(str(path))
        assert sorted(loaded) == sorted(weights)
        for k in weights:
            assert loaded[k].dtype == weights[k].dtype and loaded[k].tobytes() == weights[k].tobytes(), k
        with safetensors.safe_open(str(path), framework="numpy") as f:
            assert rc.ResNetSpec.from_json(f.metadata()["resnet_core.spec"]) == rc.get_spec(SPEC)


@needs_io_extra
def test_we_read_reference_files_and_infer_their_spec(tmp_path, need):
    stn = need("io", "safetensors.numpy")
    ml_dtypes = need("io", "ml_dtypes")
    for dtype in ("float32", ml_dtypes.bfloat16):
        weights = random_weights(SPEC, dtype=dtype)
        path = tmp_path / f"ref_{np.dtype(dtype).name}.safetensors"
        stn.save_file(weights, str(path))  # no metadata: the spec must come from the tensors
        spec, back = read_weights(path)
        assert spec == rc.get_spec(SPEC) and spec.name == SPEC
        assert {k: back[k].tobytes() for k in back} == {k: weights[k].tobytes() for k in weights}
        assert {v.dtype for v in back.values()} == {np.dtype(dtype)}


def test_a_newer_format_version_is_refused(tmp_path):
    path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    head, data = header(path)
    head["__metadata__"]["resnet_core.format_version"] = str(FORMAT_VERSION + 1)
    rewrite(path, head, data)
    with pytest.raises(FormatVersionError, match=rf"format version {FORMAT_VERSION + 1}.*up to {FORMAT_VERSION}.*"
                                                 "Upgrade resnet-core"):
        read_weights(path)


def test_a_stored_spec_with_unknown_fields_is_refused_by_name(tmp_path):
    path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    head, data = header(path)
    spec = json.loads(head["__metadata__"]["resnet_core.spec"])
    spec["frobnicate"] = 3
    head["__metadata__"]["resnet_core.spec"] = json.dumps(spec)
    rewrite(path, head, data)
    with pytest.raises(WeightsFileError, match=r"m\.safetensors: the stored spec is invalid.*frobnicate"):
        read_weights(path)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], r"need \d+ bytes of data but the file holds \d+"),
    (lambda raw: raw[:5], "fewer than the 8-byte header length"),
    (lambda raw: struct.pack("<Q", 10**12) + raw[8:], "header claims"),
    (lambda raw: raw[:8] + b"x" + raw[9:], "not JSON"),
    (lambda raw: raw + b"\0" * 4, "4 bytes after the last tensor"),
])
def test_damaged_files_are_refused(tmp_path, damage, message):
    path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(WeightsFileError, match=message) as info:
        read_weights(path)
    assert str(path) in str(info.value)


def test_inconsistent_headers_are_refused(tmp_path):
    path = write_weights(tmp_path / "m.safetensors", random_weights(SPEC), SPEC)
    head, data = header(path)
    first, second = [k for k in head if k.startswith("bn1.")][:2]  # same size
    head[second]["data_offsets"] = list(head[first]["data_offsets"])  # two tensors on the same bytes
    rewrite(path, head, data)
    with pytest.raises(WeightsFileError, match="overlap or gap"):
        read_weights(path)
    head, _ = header(path)
    head[first]["dtype"] = "Q7"
    rewrite(path, head, data)
    with pytest.raises(WeightsFileError, match=f"tensor '{first}' has dtype 'Q7'"):
        read_weights(path)
