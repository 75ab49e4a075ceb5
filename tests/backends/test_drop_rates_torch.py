"""drop_rate and drop_path_rate on PyTorch: identities in eval mode; in training, each block's DropPath drops
whole samples at the plan's rate and scales the rest by 1 / (1 - rate), the head's dropout acts before fc,
and the whole model draws exactly what timm's does (same seed, same weights, same outputs). timm carries
both rates both ways; the peers without them refuse to lose them."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.drop_rates import drop_path_schedule
from resnet_core.name_tables import PeerError
from resnet_core.testing import random_images, random_weights

pytestmark = pytest.mark.torch

# Four one-block stages: the plan's rates are 0, r/3, 2r/3, r.
TINY = rc.ResNetSpec(block="basic", layers=(1, 1, 1, 1), base_planes=4, stem_width=8, num_classes=5, name="tiny")
RATES = dict(drop_rate=0.3, drop_path_rate=0.45)
SAMPLES = 20000


def _binomial_bound(n: int, p: float) -> float:
    """Five standard deviations of a Binomial(n, p) count: a correct layer fails once in millions of seeds."""
    return 5 * math.sqrt(n * p * (1 - p)) + 1


def _model(spec: rc.ResNetSpec, seed: int = 1):
    model = rc.build(spec, backend="torch").eval()
    rc.set_weights(model, random_weights(spec.replace(drop_rate=0.0, drop_path_rate=0.0), seed=seed))
    return model


def _train_regularisers_only(model):
    """Eval mode (batch norms use their statistics) except the drop layers, so only they are random (timm's
    ResNet drops before fc by its own training flag: the root's is set too; it changes nothing else)."""
    model.eval()
    model.training = True
    for module in model.modules():
        if type(module).__name__ in ("DropPath", "Dropout"):
            module.train()
    return model


def test_the_plan_gives_each_block_timms_linear_rate_and_the_head_its_dropout():
    plan = rc.make_plan(TINY.replace(**RATES))
    assert [b.drop_path for b in plan.blocks] == [0.45 * i / 3 for i in range(4)] == \
        list(drop_path_schedule(0.45, 4))
    assert plan.head.dropout == 0.3
    assert plan.params == rc.make_plan(TINY).params  # no weights


def test_eval_mode_is_the_identity(torch):
    x = torch.from_numpy(random_images(3, 35, 37, seed=2))
    with torch.no_grad():
        plain = _model(TINY)(x)
        regularised = _model(TINY.replace(**RATES))
        assert torch.equal(regularised(x), plain)
        assert torch.equal(regularised.train().eval()(x), plain)


def test_each_blocks_drop_path_drops_whole_samples_at_its_rate_and_scales_the_rest_exactly(torch):
    torch.manual_seed(0)
    model = _model(TINY.replace(**RATES)).train()
    blocks = [b for s in range(1, 5) for b in getattr(model, f"layer{s}")]
    assert "drop_path" not in blocks[0]  # rate 0: no module, as timm
    for block, rate in zip(blocks[1:], drop_path_schedule(0.45, 4)[1:], strict=True):
        layer = block["drop_path"]
        assert layer.drop_prob == rate
        x = torch.randn(SAMPLES, 2, 3, 5)
        y = layer(x)
        dropped = (y == 0).flatten(1).all(1)
        kept = ~dropped
        assert abs(int(dropped.sum()) - SAMPLES * rate) <= _binomial_bound(SAMPLES, rate), rate
        assert (y[dropped] == 0).all() and (y[kept] != 0).all()  # whole samples, never single values
        keep = 1.0 - rate
        assert torch.equal(y[kept], x[kept] * (torch.ones(()) / keep))  # timm's arithmetic: mask / keep, times x
        np.testing.assert_allclose(y[kept].double().numpy(), x[kept].double().numpy() / keep, rtol=2 ** -23)


def test_the_head_drops_pooled_features_at_drop_rate_before_fc(torch):
    model = _train_regularisers_only(_model(TINY.replace(drop_rate=0.3)))
    assert list(model)[-3:] == ["avgpool", "drop", "fc"]
    x = torch.ones(SAMPLES, 32)
    y = model["drop"](x)
    zeros = int((y == 0).sum())
    assert abs(zeros - x.numel() * 0.3) <= _binomial_bound(x.numel(), 0.3)
    assert torch.equal(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    # wired before fc: the logits are fc of the dropped pooled features (one random draw, the same seed)
    images = torch.from_numpy(random_images(4, 35, 37, seed=3))
    with torch.no_grad():
        pooled = model.forward_taps(images)["pool"]
        torch.manual_seed(5)
        logits = model(images)
        torch.manual_seed(5)
        assert torch.equal(logits, model["fc"](torch.nn.functional.dropout(pooled, 0.3, True)))


def test_training_draws_exactly_what_timm_draws(torch, timm):
    """The exported timm model, same seed: DropPath on the main branch before the add, dropout before fc."""
    spec = TINY.replace(**RATES, attention="se", stem="deep")  # timm fixes the 7x7 stem at 64 channels
    model = _train_regularisers_only(_model(spec))
    peer = _train_regularisers_only(rc.to_peer(spec, rc.get_weights(model), "timm"))
    x = torch.from_numpy(random_images(64, 35, 37, seed=4))
    with torch.no_grad():
        torch.manual_seed(7)
        ours = model(x)
        torch.manual_seed(7)
        theirs = peer(x)
        assert torch.equal(ours, theirs)
        assert not torch.equal(ours, model.eval()(x))  # something was dropped


def test_scripted_training_draws_what_eager_draws(torch):
    model = _train_regularisers_only(_model(TINY.replace(**RATES)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not gone
        scripted = torch.jit.script(model)
    x = torch.from_numpy(random_images(16, 35, 37, seed=4))
    with torch.no_grad():
        torch.manual_seed(3)
        eager = model(x)
        torch.manual_seed(3)
        assert torch.equal(scripted(x), eager)


def _drop_probs(model) -> list[float]:
    blocks = [b for s in (model.layer1, model.layer2, model.layer3, model.layer4) for b in s]
    return [0.0 if b.drop_path is None else b.drop_path.drop_prob for b in blocks]


@pytest.mark.parametrize(("arch", "drop_rate", "drop_path_rate"), [("resnet18", 0.2, 0.1), ("resnet50d", 0.5, 0.05),
                                                                   ("resnet26t", 0.0, 0.3)])
def test_timm_resnet_rates_come_in_and_go_out(timm, arch, drop_rate, drop_path_rate):
    model = timm.create_model(arch, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    spec, weights = rc.from_peer(model)
    assert (spec.drop_rate, spec.drop_path_rate) == (drop_rate, drop_path_rate)
    assert spec.replace(drop_rate=0.0, drop_path_rate=0.0) == rc.get_spec(arch)
    assert [b.drop_path for b in rc.make_plan(spec).blocks] == _drop_probs(model)
    back = rc.to_peer(spec, weights, "timm")
    assert back.drop_rate == drop_rate and _drop_probs(back) == _drop_probs(model)  # timm's own, bit for bit


@pytest.mark.parametrize(("arch", "drop_rate", "drop_path_rate"), [("resnetv2_50", 0.25, 0.05),
                                                                   ("resnetv2_50d_gn", 0.0, 0.1)])
def test_timm_resnetv2_rates_come_in_and_go_out(timm, arch, drop_rate, drop_path_rate):
    """ResNetV2 computes the same line with torch.linspace in float32; its own values go out again."""
    model = timm.create_model(arch, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    spec, weights = rc.from_peer(model)
    assert (spec.drop_rate, spec.drop_path_rate) == (drop_rate, drop_path_rate)
    probs = [getattr(b.drop_path, "drop_prob", 0.0) for s in model.stages for b in s.blocks]
    np.testing.assert_allclose([b.drop_path for b in rc.make_plan(spec).blocks], probs, rtol=1e-7)
    back = rc.to_peer(spec, weights, "timm")
    assert back.head.drop.p == drop_rate
    assert [getattr(b.drop_path, "drop_prob", 0.0) for s in back.stages for b in s.blocks] == probs


def test_timm_options_the_spec_cannot_say_are_refused_by_name(timm):
    with pytest.raises(PeerError, match="drop_block_rate=0.1"):
        rc.from_peer(timm.create_model("resnet18", drop_block_rate=0.1))
    model = timm.create_model("resnet18", drop_path_rate=0.1)
    model.layer2[0].drop_path.drop_prob = 0.5  # no linear rule gives these
    with pytest.raises(PeerError, match="follow no linear rule"):
        rc.from_peer(model)
    model = timm.create_model("resnet18", drop_path_rate=0.1)
    model.layer4[1].drop_path.scale_by_keep = False
    with pytest.raises(PeerError, match="scale_by_keep=False"):
        rc.from_peer(model)


@pytest.mark.parametrize("peer", ["torchvision", "transformers"])
@pytest.mark.parametrize("field", ["drop_rate", "drop_path_rate"])
def test_torch_peers_without_the_option_refuse_it_by_name(torch, peer, field):
    spec = rc.get_spec("resnet18").replace(**{field: 0.1})
    with pytest.raises(PeerError, match=rf"{field}=0\.1 \({peer} models have no {field} option"):
        rc.to_peer(spec, random_weights("resnet18"), peer)


def test_pretrained_weights_take_rates_as_fine_tuning_overrides(torch):
    weights = random_weights(TINY)
    model = rc.build(TINY, backend="torch", weights=weights, num_classes=3, **RATES)
    assert (model.spec.drop_rate, model.spec.drop_path_rate, model.spec.num_classes) == (0.3, 0.45, 3)
    assert model.layer4[0].drop_path.drop_prob == 0.45
    named = rc.build(TINY.replace(drop_rate=0.2), backend="torch", weights=weights)  # the weights carry no rates
    assert named.spec.drop_rate == 0.2
    assert rc.get_weights(named).keys() == weights.keys()
