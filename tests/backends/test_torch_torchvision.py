"""The PyTorch adapter against torchvision: same state_dict, key for key, and identical outputs."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.presets import TIMM_BLOCK_PRESETS, TORCHVISION_PRESETS
from resnet_core.testing import random_images, random_weights

pytestmark = pytest.mark.torch

HEIGHT, WIDTH, BATCH = 65, 77, 2  # odd and unequal: exposes any padding or rounding difference


@pytest.fixture(scope="module")
def torch():
    import torch

    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="module")
def torchvision(need):
    return need("torch", "torchvision")


@pytest.fixture(scope="module", params=TORCHVISION_PRESETS)
def structure(request, torch, torchvision):
    """(ours, torchvision's) for every torchvision preset, built on the meta device: the modules, their
    hyperparameters and the state_dict's keys, shapes and dtypes, without allocating or initialising a weight
    (wide_resnet101_2 alone costs seconds to initialise twice). The outputs are compared on NUMERIC_PRESETS."""
    with torch.device("meta"):
        return rc.build(request.param, backend="torch"), getattr(torchvision.models, request.param)(weights=None)


# One member per torchvision family (basic, bottleneck, grouped, wide) runs forward: deeper members of a family
# repeat the same modules, which the structure tests above compare for every preset.
NUMERIC_PRESETS = ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2")


@pytest.fixture(scope="module", params=NUMERIC_PRESETS)
def pair(request, torch, torchvision):
    """(ours, torchvision's) for one preset, both holding the same perturbed weights, in eval mode.

    Module-scoped and parametrized, so pytest builds each preset once and drops it before the next.
    """
    name = request.param
    weights = random_weights(name)
    reference = getattr(torchvision.models, name)(weights=None)
    # torchvision's own model takes the perturbed tensors (BN statistics and affine included) ...
    result = reference.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    bundle = [name, rc.build(name, backend="torch"), reference.eval(), weights]
    del reference, weights
    yield bundle
    bundle.clear()  # pytest keeps the fixture value until the next one is set up
    gc.collect()


def test_state_dict_keys_order_and_shapes_equal_torchvision(structure):
    ours, reference = structure
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    for key in theirs:
        assert mine[key].shape == theirs[key].shape, key
        assert mine[key].dtype == theirs[key].dtype, key


def test_module_hyperparameters_equal_torchvision(structure, torch):
    """What state_dict does not show: strides, padding, groups, dilation, BN epsilon and momentum."""
    ours, reference = structure
    mine, theirs = dict(ours.named_modules()), dict(reference.named_modules())
    checked = 0
    for key, module in theirs.items():
        if isinstance(module, torch.nn.Conv2d):
            other = mine[key]
            assert (other.stride, other.padding, other.dilation, other.groups, other.kernel_size) == (
                module.stride, module.padding, module.dilation, module.groups, module.kernel_size), key
        elif isinstance(module, torch.nn.BatchNorm2d):
            assert (mine[key].eps, mine[key].momentum) == (module.eps, module.momentum), key
        elif isinstance(module, torch.nn.MaxPool2d):
            assert (mine[key].kernel_size, mine[key].stride, mine[key].padding) == (
                module.kernel_size, module.stride, module.padding), key
        else:
            continue
        assert isinstance(mine[key], type(module)), key
        checked += 1
    assert checked > 20


def test_torchvision_weights_load_strictly_and_outputs_are_identical(pair, torch):
    name, ours, reference, weights = pair
    # ... and ours loads torchvision's state_dict with torch's own strict loader.
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    loaded = rc.get_weights(ours)
    assert all(np.array_equal(loaded[k], weights[k]) for k in weights)
    x = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH))
    with torch.no_grad():
        expected = reference(x)
        got = ours(x)
    assert got.shape == (BATCH, 1000)
    assert torch.isfinite(expected).all() and expected.std() > 0
    assert torch.equal(got, expected), f"max |diff| = {(got - expected).abs().max().item():.3e}"


def test_stage_features_are_identical(pair, torch):
    from torchvision.models._utils import IntermediateLayerGetter

    name, ours, reference, _ = pair
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    getter = IntermediateLayerGetter(reference, {f"layer{i}": str(i) for i in range(1, 5)})
    x = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH, seed=1))
    with torch.no_grad():
        expected = list(getter(x).values())
        got = ours.forward_features(x)
        taps = ours.forward_taps(x)
    assert len(got) == len(expected) == 4
    for stage, (g, e) in enumerate(zip(got, expected, strict=True), 1):
        assert torch.equal(g, e), f"layer{stage}"
    assert list(taps) == list(ours.plan.taps)
    assert torch.equal(taps["logits"], reference(x))


# ---------------------------------------------------------------------------------------------
# Training-mode behaviour and construction options, on small presets only.


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d"])
def test_train_mode_step_updates_running_stats_like_torchvision(name, torch, torchvision):
    weights = {k: torch.from_numpy(v) for k, v in random_weights(name, seed=3).items()}
    reference = getattr(torchvision.models, name)(weights=None)
    reference.load_state_dict(weights, strict=False)
    ours = rc.build(name, backend="torch")
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.train()
    ours.train()
    x = torch.from_numpy(random_images(BATCH, 64, 64, seed=2))
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
    after_ours, after_ref = ours.state_dict(), reference.state_dict()
    assert not torch.equal(after_ref["bn1.running_mean"], weights["bn1.running_mean"])  # stats moved
    for key, value in after_ref.items():
        assert torch.equal(after_ours[key], value), key


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_like_torchvision(name, torch, torchvision):
    ours = rc.build(name, backend="torch", zero_init_residual=True)
    reference = getattr(torchvision.models, name)(weights=None, zero_init_residual=True)
    mine, theirs = ours.state_dict(), reference.state_dict()
    zeroed = {k for k, v in theirs.items() if k.endswith(".weight") and v.ndim == 1 and not v.any()}
    assert zeroed and zeroed == {k for k, v in mine.items() if k.endswith(".weight") and v.ndim == 1 and not v.any()}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_default_init_follows_torchvision_scheme(name, torch, torchvision):
    ours = rc.build(name, backend="torch")
    reference = getattr(torchvision.models, name)(weights=None)
    mine, theirs = ours.state_dict(), reference.state_dict()
    for key, value in theirs.items():
        if value.ndim == 4 or key == "fc.weight":  # random: kaiming (fan_out) / linear default
            assert abs(mine[key].std().item() - value.std().item()) <= 0.1 * value.std().item(), key
        elif key == "fc.bias":  # random: uniform(+-1/sqrt(fan_in))
            assert mine[key].abs().max().item() <= 1 / np.sqrt(theirs["fc.weight"].shape[1]), key
        else:  # BN: gamma 1, beta 0, mean 0, var 1, counter 0
            assert torch.equal(mine[key], value), key


def test_num_classes_override(torch):
    model = rc.build("resnet18", backend="torch", num_classes=7)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(random_images(1, 64, 64)))
    assert out.shape == (1, 7)
    assert rc.spec_of(model).num_classes == 7


@pytest.mark.parametrize("pooling", ["avg", "max", None], ids=["avg", "max", "none"])
def test_headless_outputs(torch, pooling):
    model = rc.build("resnet18", backend="torch", include_top=False, pooling=pooling).eval()
    x = torch.from_numpy(random_images(BATCH, HEIGHT, WIDTH))
    with torch.no_grad():
        out = model(x)
        last = model.forward_features(x)[-1]
    assert "fc.weight" not in model.state_dict()
    if pooling is None:
        assert torch.equal(out, last)
    else:
        reduce = torch.mean if pooling == "avg" else torch.amax
        assert out.shape == (BATCH, 512)
        assert torch.allclose(out, reduce(last, dim=(2, 3)), rtol=1e-6, atol=1e-6)


# Built in torch, so the deep timm presets of ECA, anti-aliasing, ResNet-RS and SENet (2-10 s each on two
# cores) are left to their shallower members, which take the same code paths.
_BUILT = [n for n in rc.list_specs()
          if n not in TIMM_BLOCK_PRESETS or rc.make_plan(rc.get_spec(n)).num_params < 60_000_000]


@pytest.mark.parametrize("name", _BUILT)
def test_state_dict_is_the_plan(name, torch):
    """Every registered preset (timm variants too): state_dict = the plan's params + BN counters."""
    plan = rc.make_plan(rc.get_spec(name))
    with torch.device("meta"):  # keys and order only: nothing to allocate
        model = rc.build(name, backend="torch")
    keys = [k for k in model.state_dict() if not k.endswith(".num_batches_tracked")]
    assert keys == [p.name for p in plan.params]
