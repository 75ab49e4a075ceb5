"""TorchScript: ``torch.jit.script`` of our torch model computes what the eager model does, for every block
family, and survives ``torch.jit.save``/``load`` (LibTorch serving and Triton's PyTorch backend take that file).

Scripted and eager run the same aten kernels (TorchScript fuses nothing on CPU by default), so the outputs
are compared bit for bit; ``torch.fx`` tracing and ``torch.compile`` without graph breaks are checked too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import random_images, random_weights

pytestmark = pytest.mark.torch

TINY = rc.get_spec("tiny_resnext")
PREACT = dict(preact=True, stride_block="last", stem_pool_padding="zero", conv_bias=True)
BASIC = dict(block="basic", groups=1, width_per_group=64)
# Every block family and option the torch forward branches on, a few per spec (scripting takes seconds).
FAMILIES = {
    "basic_se_blur_deep_stem_avg_shortcut": dict(BASIC, attention="se", anti_alias="blur", stem="deep",
                                                 downsample="avg"),
    "resnext_eca_avg_anti_alias_tiered_stem": dict(attention="eca", anti_alias="avg", stem="deep_tiered"),
    "replace_stem_pool_group_norm_std_conv_os8_features": dict(replace_stem_pool=True, stem="deep", norm="group",
                                                               norm_groups=4, std_conv=True, output_stride=8,
                                                               include_top=False, pooling="avg"),
    "preact_last_zero_pad_se": dict(PREACT, attention="se"),
    "preact_evonorm_avg_shortcut_feature_map": dict(PREACT, norm="evo_s0", norm_groups=4, conv_bias=False,
                                                         downsample="avg", include_top=False),
    "preact_frn_basic_max_pool": dict(PREACT, **BASIC, norm="frn", conv_bias=False, include_top=False,
                                      pooling="max"),
    "drop_rate_drop_path_se": dict(attention="se", drop_rate=0.3, drop_path_rate=0.2),  # DropPath, Dropout
}


def _model(torch, options):
    spec = TINY.replace(**options)
    model = rc.build(spec, backend="torch").eval()
    rc.set_weights(model, random_weights(spec, seed=1))
    # Odd sizes, where padding and ceil rules matter; timm's avg anti-aliasing needs even sizes at every stage.
    size = (64, 96) if spec.anti_alias == "avg" else (49, 57)
    return model, torch.from_numpy(random_images(1, *size, seed=2)) * 2.0  # negative stem outputs


def _script(torch, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not gone
        return torch.jit.script(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_scripted_model_equals_eager_and_survives_save_and_load(torch, family, tmp_path):
    model, x = _model(torch, FAMILIES[family])
    scripted = _script(torch, model)
    path = tmp_path / "model.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        expected_taps = model.forward_taps(x)  # the eager forward equals its last tap (test_torch_torchvision.py)
        want = expected_taps[model.plan.taps[-1]]
        for _ in range(2):  # the profiling executor optimises the graph on the second call
            assert torch.equal(loaded(x), want), family
        features = loaded.forward_features(x)
        taps = loaded.forward_taps(x)
    assert list(taps) == list(expected_taps) == list(model.plan.taps)
    for name, value in expected_taps.items():
        assert torch.equal(taps[name], value), name
    assert [f.shape for f in features] == [expected_taps[name].shape for name in model.plan.feature_taps]
    for got, name in zip(features, model.plan.feature_taps, strict=True):
        assert torch.equal(got, expected_taps[name]), name
    # The scripted module also lists non-persistent buffers (the blur filters), as timm's BlurPool2d would.
    state = loaded.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(state[name], value), name


def test_scripted_model_trains_like_eager(torch):
    """Training mode too: batch statistics and the in-place ReLUs give the same gradients."""
    model, x = _model(torch, FAMILIES["preact_last_zero_pad_se"])
    scripted = _script(torch, model.train())
    model.zero_grad()
    model(x).square().sum().backward()
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    scripted(x).square().sum().backward()
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, want[name]), name


def test_fx_traces_to_the_same_function(torch):
    model, x = _model(torch, FAMILIES["basic_se_blur_deep_stem_avg_shortcut"])
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))


def test_compile_has_no_graph_break(torch):
    """One tiny model only: compiling is slow on a small CPU."""
    model, x = _model(torch, dict(BASIC, layers=(1, 1, 1, 1), attention="eca", anti_alias="blur"))
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        np.testing.assert_array_equal(compiled(x).numpy(), model(x).numpy())
