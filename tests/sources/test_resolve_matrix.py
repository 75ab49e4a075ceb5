"""Every entry point x every source kind: each takes the same arguments and reads them the same way.

Entry points: rc.build, rc.read_weights, rc.info_of, rc.summary, rc.export, rc.parity and the commands
convert, info, summary, parity. Sources: a preset, a ResNetSpec, a spec .json, each weights format, an .npz of
canonical arrays, a model folder written by rc.save_pretrained and named like a preset (``./resnet18``), the
bare preset name beside that folder (the preset, not the folder), ``local-dir:`` and ``hf-hub:`` from an
offline hub cache the test writes. torchvision: names are covered by test_sources_torch.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.cli import main
from resnet_core.errors import InputError
from resnet_core.sources import SourceError
from resnet_core.testing import place_in_hf_cache, random_weights

pytestmark = pytest.mark.torch

TINY = rc.get_spec("tiny_resnext").replace(num_classes=5)
FOLDER_SPEC = rc.get_spec("resnet18").replace(num_classes=3)  # timm builds resnet18: save_pretrained's layout
REPO = "tester/resnet18"

# kind -> (argument, expected spec, whether it holds weights (and which), whether the spec is stored)
ARCHITECTURES = {
    "preset": ("tiny_resnext", rc.get_spec("tiny_resnext")),
    "spec": (TINY, TINY),
    "spec-json": ("tiny.json", TINY),
    "bare-name-beside-folder": ("resnet18", rc.get_spec("resnet18")),
}
FILES = {"safetensors": "tiny.safetensors", "pth": "tiny.pth", "weights-h5": "tiny.weights.h5", "npz": "tiny.npz"}
FOLDERS = {"./folder": "./resnet18", "local-dir": "local-dir:resnet18", "hf-hub": f"hf-hub:{REPO}"}
KINDS = [*ARCHITECTURES, *FILES, *FOLDERS]


@pytest.fixture(scope="module")
def place(tmp_path_factory, torch, need):
    """The sources on disk, written once: files of TINY with random weights, and resnet18 (3 classes) saved by
    rc.save_pretrained as ./resnet18 and placed in a hub cache as tester/resnet18."""
    need("torch", "timm")
    need("torch", "huggingface_hub")
    root = tmp_path_factory.mktemp("sources")
    tiny = random_weights(TINY, seed=1)
    (root / "tiny.json").write_text(TINY.to_json())
    for name in ("tiny.safetensors", "tiny.pth", "tiny.weights.h5"):
        rc.write_weights(root / name, tiny, TINY)
    np.savez(root / "tiny.npz", **tiny)
    folder = random_weights(FOLDER_SPEC, seed=2)
    rc.save_pretrained(folder, root / "resnet18", spec=FOLDER_SPEC)
    place_in_hf_cache(root / "resnet18", REPO, root / "hf" / "hub")
    return SimpleNamespace(root=root, tiny=tiny, folder=folder)


@pytest.fixture
def here(place, monkeypatch):
    """In the sources' folder, with the hub offline on its cache (huggingface_hub reads its constants once)."""
    import huggingface_hub.constants as constants

    monkeypatch.chdir(place.root)
    monkeypatch.setenv("HF_HOME", str(place.root / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(place.root / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return place


def source(kind: str) -> object:
    if kind in ARCHITECTURES:
        return ARCHITECTURES[kind][0]
    return FILES.get(kind) or FOLDERS[kind]


def expected(kind: str, place: SimpleNamespace) -> tuple[rc.ResNetSpec, dict | None]:
    if kind in ARCHITECTURES:
        return ARCHITECTURES[kind][1], None
    if kind in FILES:
        return TINY, place.tiny
    return FOLDER_SPEC, place.folder


def same(got: dict, want: dict) -> bool:
    return list(got) == list(want) and all(np.array_equal(np.asarray(got[k], np.float32), want[k]) for k in want)


def cli(capsys, *argv: str) -> SimpleNamespace:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return SimpleNamespace(code=code, out=out.out, err=out.err)


@pytest.mark.parametrize("kind", KINDS)
def test_build(here, kind):
    spec, weights = expected(kind, here)
    model = rc.build(source(kind), backend="torch")
    assert rc.spec_of(model).replace(name=spec.name) == spec
    if weights is not None:
        assert same(rc.get_weights(model), weights)


@pytest.mark.parametrize("kind", KINDS)
def test_read_weights(here, kind):
    spec, weights = expected(kind, here)
    if weights is None:
        with pytest.raises(InputError, match="an architecture"):
            rc.read_weights(source(kind))
        return
    found, read = rc.read_weights(source(kind))
    assert found.replace(name=spec.name) == spec and same(read, weights)


@pytest.mark.parametrize("kind", KINDS)
def test_info_of(here, kind):
    if kind == "npz":  # canonical arrays record neither a spec nor how they were trained
        with pytest.raises(InputError, match="stores neither a trained-with record nor a spec"):
            rc.info_of(source(kind))
        return
    info = rc.info_of(source(kind))
    assert isinstance(info, rc.WeightsInfo)
    if kind in FOLDERS:  # the record save_pretrained wrote into timm's pretrained_cfg
        assert info.interpolation == "bicubic" and "resnet18" in (info.source or "")


@pytest.mark.parametrize("kind", KINDS)
def test_summary_and_its_command(here, kind, capsys):
    spec, _ = expected(kind, here)
    params = rc.make_plan(spec).num_params
    assert rc.summary(source(kind)).params == params
    if kind != "spec":
        run = cli(capsys, "summary", source(kind), "--json")
        assert run.code == 0 and json.loads(run.out)["params"] == params


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "spec"])
def test_info_command(here, kind, capsys):
    spec, weights = expected(kind, here)
    run = cli(capsys, "info", source(kind), "--json")
    if weights is None:
        assert run.code == 2 and run.err.count("\n") == 1 and "architecture, not weights" in run.err
        return
    assert run.code == 0, run.err
    described = json.loads(run.out)
    assert rc.ResNetSpec.from_dict(described["spec"]).num_classes == spec.num_classes
    assert described["tensors"] == len(weights)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "spec"])
def test_convert_command(here, kind, capsys, tmp_path):
    spec, weights = expected(kind, here)
    out = tmp_path / "out.safetensors"
    run = cli(capsys, "convert", source(kind), out, "-q")
    if weights is None:
        assert run.code == 2 and "architecture" in run.err and not out.exists()
        return
    assert run.code == 0, run.err
    found, read = rc.read_weights(out)
    assert found.replace(name=spec.name) == spec and same(read, weights)


# Export and parity run a framework's exporter or an engine process: an architecture, a weights file and the
# hub name (export's reported bug), not every format again.
HEAVY = ["spec-json", "safetensors", "hf-hub"]


@pytest.mark.parametrize("kind", HEAVY)
def test_export(here, kind, tmp_path, need):
    need("torch", "onnx")
    spec, _ = expected(kind, here)
    result = rc.export(source(kind), tmp_path / "model.onnx", size=32)
    assert result.spec == spec.name and (tmp_path / "model.onnx").is_file()
    assert result.source.startswith("random") == (kind == "spec-json")


@pytest.mark.parametrize("kind", HEAVY[1:])
def test_parity(here, kind):
    spec, weights = expected(kind, here)
    report = rc.parity(source(kind), backends="torch", size=32, batch=1)
    assert report.spec == spec.name
    note = next(n for n in report.notes if n.startswith("weights: "))
    assert note.startswith("weights: random") == (weights is None)


def test_parity_command_reads_a_file_with_the_arch_given(here, capsys):
    run = cli(capsys, "parity", "tiny.npz", "--arch", "tiny.json", "--backends", "torch", "--size", "32")
    assert "tiny_resnext" in run.out, run.err
    from resnet_core.cli import make_parser

    old = make_parser().parse_args(["parity", "tiny.npz", "--spec", "tiny.json"])  # the old spelling, hidden
    assert old.arch == "tiny.json"


def test_build_with_weights_from_a_file_of_the_named_architecture(here):
    model = rc.build("tiny_resnext", backend="torch", weights="tiny.safetensors")  # 5 classes: the file's head
    assert rc.spec_of(model).num_classes == 5 and same(rc.get_weights(model), here.tiny)
    with pytest.raises(InputError, match="holds weights already"):
        rc.build("tiny.safetensors", backend="torch", weights="tiny.npz")


def test_a_hub_name_the_hub_forbids_is_an_input_error(here, capsys):
    with pytest.raises(SourceError, match="not a valid Hugging Face repo id"):
        rc.build("hf-hub:timm/..%2f..%2fetc", backend="torch")
    for command in ("info", "convert", "summary", "parity"):
        argv = [command, "hf-hub:timm/..%2f..%2fetc"] + (["out.safetensors"] if command == "convert" else [])
        run = cli(capsys, *argv)
        assert run.code == 2 and run.err.count("\n") == 1 and "not a valid Hugging Face repo id" in run.err
