"""Pretrained sources by name on torch: hub caches built with each peer's own writer, proven valid by
loading them through that peer, then read through resnet-core and compared with the peer. No network:
HF_HUB_OFFLINE is on and HF_HOME / TORCH_HOME point at the test's folder."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.sources import SourceError
from resnet_core.testing import (
    assert_same_weights,
    place_in_hf_cache,
    random_images,
    random_weights,
    relative_error,
)

pytestmark = pytest.mark.torch

HEIGHT, WIDTH, BATCH = 65, 77, 2
LABELS = ("cat", "dog", "fox", "owl", "yak")
SPEC = rc.get_spec("resnet18").replace(num_classes=len(LABELS))


@pytest.fixture
def offline(tmp_path, monkeypatch, need):
    """HF_HOME and TORCH_HOME in tmp_path, HF_HUB_OFFLINE on (in the env and in huggingface_hub's constants,
    which it reads once at import)."""
    constants = need("torch", "huggingface_hub.constants")
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home / "hub"


@pytest.fixture
def run_cli(capsys):
    """``resnet-core ARGS`` in this process (so the offline fixture applies): returncode, stdout, stderr."""
    from types import SimpleNamespace

    from resnet_core.cli import main

    def run(*argv: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def _logits(torch, model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


@pytest.fixture
def timm_repo(torch, need, offline, tmp_path):
    """A timm ResNet saved by timm's save_for_hf into the hub cache as tester/resnet18-pets; returns (repo,
    the timm model, its canonical weights)."""
    timm = need("torch", "timm")
    weights = random_weights(SPEC, seed=3)
    record = rc.WeightsInfo(class_names=LABELS, crop_pct=0.95, input_size=(3, 224, 224), interpolation="bicubic",
                            licence="apache-2.0")
    model = rc.to_peer(SPEC, weights, "timm", info=record)  # the record goes into timm's pretrained_cfg
    timm.models.save_for_hf(model, tmp_path / "saved", safe_serialization=True)
    place_in_hf_cache(tmp_path / "saved", "tester/resnet18-pets", offline)
    return "tester/resnet18-pets", model, weights


def test_timm_hub_repo_through_timm_then_resnet_core(torch, need, timm_repo):
    timm = need("torch", "timm")
    repo, original, weights = timm_repo
    images = random_images(BATCH, HEIGHT, WIDTH, seed=4)
    proof = timm.create_model(f"hf-hub:{repo}", pretrained=True).eval()  # the cache is valid for timm itself
    want = _logits(torch, proof, images)
    assert np.array_equal(want, _logits(torch, original, images))
    model = rc.build(f"hf-hub:{repo}", backend="torch").eval()
    assert_same_weights(rc.get_weights(model), weights)
    assert relative_error(_logits(torch, model, images), want) == 0.0
    info = rc.info_of(model)
    assert info.class_names == LABELS and info.crop_pct == 0.95 and info.interpolation == "bicubic"
    assert info.source == f"hf-hub:{repo}" and info.licence == "apache-2.0" and info.input_size == (3, 224, 224)
    top = rc.decode_predictions(want, model, top=2)
    assert [row[0][1] for row in top] == [LABELS[i] for i in want.argmax(1)]


def test_read_weights_and_cli_take_hub_sources(torch, timm_repo, tmp_path, run_cli):
    repo, _, weights = timm_repo
    loaded = rc.read_weights(f"hf-hub:{repo}")
    assert loaded.spec == SPEC and loaded.info.class_names == LABELS
    assert_same_weights(loaded.weights, weights)
    out = tmp_path / "pets.safetensors"
    assert run_cli("convert", f"hf-hub:{repo}", str(out), "-q").returncode == 0
    back = rc.read_weights(out)
    assert back.spec == SPEC and back.info == loaded.info  # the record travels through the conversion
    assert_same_weights(back.weights, weights)
    info = run_cli("info", f"hf-hub:{repo}", "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["weights_info"]["class_names"] == list(LABELS) and described["parameters"] > 0


def test_transformers_hub_repo(torch, need, offline, tmp_path):
    transformers = need("torch", "transformers")
    weights = random_weights(SPEC, seed=5)
    peer = rc.to_peer(SPEC, weights, "transformers", info=rc.WeightsInfo(class_names=LABELS))
    peer.save_pretrained(tmp_path / "saved")
    place_in_hf_cache(tmp_path / "saved", "tester/hf-resnet", offline)
    proof = transformers.ResNetForImageClassification.from_pretrained("tester/hf-resnet").eval()
    images = random_images(BATCH, HEIGHT, WIDTH, seed=6)
    with torch.no_grad():
        want = proof(torch.from_numpy(images)).logits.numpy()
    model = rc.build("hf-hub:tester/hf-resnet", backend="torch").eval()
    assert_same_weights(rc.get_weights(model), weights)
    assert relative_error(_logits(torch, model, images), want) <= 1e-6
    assert rc.info_of(model).class_names == LABELS


def _torchvision_cache(torch, torchvision, monkeypatch, tmp_path, seed=7):
    """resnet18 weights torch.save'd into TORCH_HOME/hub/checkpoints under a name with their true hash
    prefix; the registry's IMAGENET1K_V1 entry points at that name (its real file cannot be made here)."""
    weights = random_weights("resnet18", seed=seed)
    model = rc.to_peer("resnet18", weights, "torchvision")
    raw = tmp_path / "raw.pth"
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    target = checkpoints / f"resnet18-{digest[:8]}.pth"
    raw.rename(target)
    entry = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(entry.value, "url", f"https://download.pytorch.org/models/{target.name}")
    return entry, target, weights


def test_torchvision_tag_through_the_torch_hub_cache(torch, need, offline, monkeypatch, tmp_path):
    torchvision = need("torch", "torchvision")
    entry, target, weights = _torchvision_cache(torch, torchvision, monkeypatch, tmp_path)
    proof = torchvision.models.resnet18(weights=entry).eval()  # torchvision's own loader reads the cache
    images = random_images(BATCH, HEIGHT, WIDTH, seed=8)
    model = rc.build("torchvision:resnet18.IMAGENET1K_V1", backend="torch").eval()
    assert_same_weights(rc.get_weights(model), weights)
    assert relative_error(_logits(torch, model, images), _logits(torch, proof, images)) == 0.0
    info = rc.info_of(model)
    assert len(info.class_names) == 1000 and info.class_names[0] == "tench"
    assert info.crop_pct == round(224 / 256, 4) and info.interpolation == "bilinear"
    # A corrupt cache entry is refused by its hash prefix, naming the file.
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(SourceError, match=r"does not match its hash prefix .*Delete it"):
        rc.read_weights("torchvision:resnet18.IMAGENET1K_V1")


def test_named_architecture_with_weights_and_mismatch(torch, timm_repo):
    repo, _, weights = timm_repo
    model = rc.build("resnet18", backend="torch", weights=f"hf-hub:{repo}")
    assert rc.spec_of(model).name == "resnet18" and rc.spec_of(model).num_classes == len(LABELS)
    assert_same_weights(rc.get_weights(model), weights)
    with pytest.raises(ValueError, match=r"is not a resnet18d: .*stem='7x7' \(not 'deep'\)"):
        rc.build("resnet18d", backend="torch", weights=f"hf-hub:{repo}")


def test_fine_tuning_overrides(torch, need, timm_repo, caplog):
    timm = need("torch", "timm")
    repo, _, weights = timm_repo
    with caplog.at_level(logging.WARNING, logger="resnet_core"):
        model = rc.build(f"hf-hub:{repo}", backend="torch", num_classes=3)
    assert [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()] and \
        len(caplog.records) == 1
    got = rc.get_weights(model)
    assert got["fc.weight"].shape == (3, 512)
    assert all(np.array_equal(got[k], v) for k, v in weights.items() if not k.startswith("fc."))
    assert rc.info_of(model).class_names is None
    headless = rc.build(f"hf-hub:{repo}", backend="torch", include_top=False, pooling="max")
    assert rc.spec_of(headless).pooling == "max" and "fc.weight" not in rc.get_weights(headless)
    # in_channels=1 and 5: the stem kernel exactly as timm's adapt_input_conv makes it
    from timm.models._manipulate import adapt_input_conv

    for channels in (1, 5):
        adapted = rc.get_weights(rc.build(f"hf-hub:{repo}", backend="torch", in_channels=channels))["conv1.weight"]
        want = adapt_input_conv(channels, torch.from_numpy(weights["conv1.weight"])).numpy()
        assert np.array_equal(adapted, want)
    assert timm  # the peer defines the rule


def test_gray_image_gives_the_rgb_features_of_that_image_repeated(torch, timm_repo):
    repo = timm_repo[0]
    rgb = rc.build(f"hf-hub:{repo}", backend="torch", include_top=False).eval()
    gray = rc.build(f"hf-hub:{repo}", backend="torch", include_top=False, in_channels=1).eval()
    image = random_images(BATCH, HEIGHT, WIDTH, channels=1, seed=9)
    want = _logits(torch, rgb, np.repeat(image, 3, axis=1))
    error = relative_error(_logits(torch, gray, image), want)
    assert error <= 1e-6, error
    mean, std = rc.info_of(gray).normalisation  # the record follows the stem: one channel, the RGB average
    assert len(mean) == len(std) == 1 and abs(mean[0] - sum(rc.info_of(rgb).normalisation[0]) / 3) < 1e-12


def test_local_folder_and_bad_sources(torch, need, timm_repo, offline, tmp_path, run_cli):
    repo, original, weights = timm_repo
    loaded = rc.read_weights(tmp_path / "saved")  # the folder timm wrote, read directly
    assert_same_weights(loaded.weights, weights)
    # Without timm, a timm folder whose architecture is a preset is read directly (safetensors or .bin).
    need("torch", "timm").models.save_for_hf(original, tmp_path / "bin", safe_serialization=False)
    from resnet_core.sources import folder as folder_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folder_module, "has_timm", lambda: False)
        for name in ("saved", "bin"):
            without = rc.read_weights(tmp_path / name)
            assert without.spec == SPEC and without.info.class_names == LABELS
            assert_same_weights(without.weights, weights)
    out = tmp_path / "never.safetensors"
    for source, text in [
        ("hf-hub:tester/not-cached", "is not in the Hugging Face cache .* and HF_HUB_OFFLINE is set"),
        ("hf-hub:no-slash", "expected hf-hub:ORG/NAME"),
        ("torchvision:resnet18.IMAGENET9K_V9", "has no tag 'IMAGENET9K_V9'. Known tags: IMAGENET1K_V1"),
        ("torchvision:vit_b_16", "expected torchvision:NAME.TAG"),
    ]:
        with pytest.raises(SourceError, match=text):
            rc.read_weights(source)
        result = run_cli("convert", source, str(out))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert source in result.stderr and not out.exists()


def test_non_resnet_architecture_is_refused_by_name(torch, need, offline, tmp_path):
    need("torch", "timm")
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 10,
                                                     "pretrained_cfg": {}}))
    place_in_hf_cache(folder, "tester/vit", offline)
    with pytest.raises(SourceError, match=r"hf-hub:tester/vit: architecture 'vit_tiny_patch16_224' "
                                          r"\(timm.models.vision_transformer\) is not a ResNet"):
        rc.build("hf-hub:tester/vit", backend="torch")
    # A timm ResNet with an option our spec lacks names that option.
    timm = need("torch", "timm")
    odd = timm.create_model("resnet18", num_classes=2, act_layer="silu")
    timm.models.save_for_hf(odd, tmp_path / "odd", model_args={"act_layer": "silu"}, safe_serialization=True)
    with pytest.raises(SourceError, match=r"odd: timm's resnet18 is not a ResNet .*act_layer"):
        rc.read_weights(tmp_path / "odd")


def test_parity_takes_a_hub_source(torch, timm_repo):
    """``resnet-core parity hf-hub:...``: the parity run reads the source in the parent process (the engine
    workers then get its weights as any file's; running them is test_parity_*'s job)."""
    from resnet_core.parity.core import _resolve

    repo, _, weights = timm_repo
    plan, loaded, note = _resolve(f"hf-hub:{repo}", None, seed=0)
    assert plan.spec == SPEC and note == f"hf-hub:{repo}"
    assert_same_weights(loaded, weights)


@pytest.mark.parametrize("layout", ["timm", "transformers"])
def test_save_pretrained_writes_what_the_peer_reads(torch, need, timm_repo, tmp_path, layout):
    repo, _, weights = timm_repo
    model = rc.build(f"hf-hub:{repo}", backend="torch").eval()
    folder = rc.save_pretrained(model, tmp_path / layout, layout=layout)
    if layout == "timm":
        peer = need("torch", "timm").create_model(f"local-dir:{folder}", pretrained=True).eval()
    else:
        peer = need("torch", "transformers").ResNetForImageClassification.from_pretrained(folder).eval()
    images = random_images(BATCH, HEIGHT, WIDTH, seed=10)
    with torch.no_grad():
        out = peer(torch.from_numpy(images))
    theirs = out.logits.numpy() if layout == "transformers" else out.numpy()
    assert relative_error(theirs, _logits(torch, model, images)) <= 1e-6
    card = (folder / "README.md").read_text()
    assert f"Source: hf-hub:{repo}" in card and "Licence: apache-2.0" in card and "maximum relative error" in card
    back = rc.read_weights(folder)  # and resnet-core reads the folder back, record included
    assert_same_weights(back.weights, weights)
    assert back.info.class_names == LABELS
    with pytest.raises(FileExistsError, match="exists"):
        rc.save_pretrained(model, folder, layout=layout)
