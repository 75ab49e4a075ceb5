"""Fuzzed weight files: a truncated or mutated safetensors, .pth or .weights.h5 file either still converts
completely or gives one clear error of ours naming the file; never a crash, a hang or a partial output.

safetensors runs in the core env (our own numpy reader), .pth in the torch env, .weights.h5 and .keras in
the Keras envs (h5py comes with the frameworks). The file is tiny, so every byte is reachable.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from spec_strategies import ci_settings

from resnet_core.errors import ResNetCoreError
from resnet_core.io import convert, read_weights, write_weights
from resnet_core.plan import make_plan
from resnet_core.spec import ResNetSpec
from resnet_core.testing import random_weights

SPEC = ResNetSpec(block="basic", layers=(1,), base_planes=2, stem_width=2, num_classes=3, name="fuzzed")
# Ours: a file that cannot be read (WeightsFileError), whose tensors do not fit the spec, or whose spec cannot
# be inferred: all ResNetCoreError, which the CLI reports as bad input (exit 2).
OUR_ERRORS = ResNetCoreError
FORMATS = {".safetensors": [], ".pth": [pytest.mark.torch], ".weights.h5": [pytest.mark.keras],
           ".keras": [pytest.mark.keras]}
HANG_SECONDS = 60


@contextlib.contextmanager
def no_hang(seconds: int) -> Iterator[None]:
    def fail(*_: object) -> None:
        raise AssertionError(f"reading the damaged file took over {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# Damage, described apart from the file so failures can be recorded as @example cases: positions are
# taken modulo the file's length.
DAMAGE = st.tuples(st.just("cut"), st.integers(0, 2**16)) | st.tuples(
    st.just("overwrite"), st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=8))


def damaged(raw: bytes, damage: tuple) -> bytes:
    """The file cut short anywhere, or up to 8 bytes overwritten anywhere."""
    kind, where = damage
    if kind == "cut":
        return raw[: where % len(raw)]
    out = bytearray(raw)
    for at, value in where:
        out[at % len(raw)] = value
    return bytes(out)


def check_one_clear_error_or_complete(folder: Path, ext: str, data: bytes) -> None:
    source, target = folder / f"damaged{ext}", folder / "out.safetensors"
    source.write_bytes(data)
    before = sorted(os.listdir(folder))
    try:
        with no_hang(HANG_SECONDS):
            result = convert(source, target)
    except OUR_ERRORS as exc:
        assert str(source) in str(exc), f"the error does not name the file: {exc}"
        assert sorted(os.listdir(folder)) == before, "a failed conversion left a file behind"
        return
    finally:
        source.unlink()
    # Some damage leaves a valid file (a changed tensor byte, say): then the output is complete.
    again = read_weights(target)
    assert list(again.weights) == [p.name for p in make_plan(result.spec).params]
    target.unlink()


class Original:
    """A written file's format and bytes (its repr leaves the bytes out of hypothesis's reports)."""

    def __init__(self, ext: str, raw: bytes):
        self.ext, self.raw = ext, raw

    def __repr__(self) -> str:
        return f"Original({self.ext!r}, {len(self.raw)} bytes)"


@pytest.fixture(scope="module", params=[pytest.param(ext, marks=m, id=ext.lstrip(".")) for ext, m in FORMATS.items()])
def original(request, folder: Path) -> Original:
    ext = request.param
    if ext in (".weights.h5", ".keras"):
        request.getfixturevalue("need")("keras", "h5py")
    path = write_weights(folder / f"original{ext}", random_weights(SPEC), SPEC)
    return Original(ext, path.read_bytes())


@ci_settings(max_examples=120)
@given(DAMAGE)
@example(("overwrite", [(507, 133)]))  # found on .pth: torch.load raised a TypeError the reader let through
@example(("overwrite", [(1052, 0)]))  # found on .weights.h5: h5py raised RuntimeError iterating attributes
@example(("overwrite", [(42320, 0)]))  # found on .weights.h5: a variable turned into a named datatype
def test_damaged_files_give_one_clear_error(original, folder, damage):
    check_one_clear_error_or_complete(folder, original.ext, damaged(original.raw, damage))


@example(b"")
@example(b"\x08" + b"\x00" * 7 + b"{}      ")
@ci_settings(max_examples=60)
@given(st.binary(max_size=64))
def test_tiny_safetensors_files_give_one_clear_error(folder, data):
    check_one_clear_error_or_complete(folder, ".safetensors", data)
