"""What the timm test files share: timm models holding known weights, one perturbation of their norms,
running them, the Keras parity check and the refusal check. Frameworks come in as arguments (the
``torch`` / ``timm`` fixtures), so importing this module imports none."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pytest

import resnet_core as rc
from resnet_core.testing import assert_same_weights, loaded, random_images, relative_error, to_channels_last

HEIGHT, WIDTH, BATCH = 65, 77, 2  # odd sizes: asymmetric padding and floor/ceil rounding show


def holding(torch, model: Any, weights: Mapping[str, np.ndarray]) -> Any:
    """``model`` (a timm ResNet, whose names are the canonical ones) holding ``weights``, in eval mode."""
    result = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    assert not result.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys)
    return model.eval()


def perturb(torch, model: Any, seed: int, kernel_offsets: bool = True) -> Any:
    """Non-trivial norm statistics and affine parameters (EvoNorm's ``v`` and FRN's ``tau`` on both sides
    of 0), kernels with a per-channel offset (so weight standardisation changes them; ``kernel_offsets``
    False leaves kernels alone: the offsets overflow a deep pre-activation residual stream such as
    resnetv2_101's to inf) and a classifier worth comparing, in place; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith(".v"):
                t.copy_(torch.rand(t.shape, generator=g) * 2.0 - 0.5)
            elif name.endswith(".tau"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif t.ndim == 1:  # gamma
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif kernel_offsets and (t.ndim == 4 and t.shape[2:] != (1, 1) or name.endswith("conv.weight")):
                t.add_(torch.randn(t.shape[0], 1, 1, 1, generator=g) * t.std())
            if name in ("head.fc.weight", "fc.weight"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
    return model.eval()


def assert_timm_round_trip(torch, timm, spec: rc.ResNetSpec, weights: Mapping[str, np.ndarray], seed: int,
                           size: tuple[int, int] = (HEIGHT, WIDTH), batch: int = BATCH) -> None:
    """``spec`` exports to timm's ResNet and imports back to the same spec and weights; timm's model computes
    ours bit for bit."""
    peer = rc.to_peer(spec, weights, "timm")
    assert isinstance(peer, timm.models.resnet.ResNet)
    back_spec, back = rc.from_peer(peer)
    assert back_spec == spec
    assert_same_weights(back, weights)
    images = random_images(batch, *size, seed=seed)
    assert np.array_equal(run(torch, peer, images), run(torch, loaded(spec, weights), images))


def run(torch, model: Any, images: np.ndarray) -> np.ndarray:
    """A torch model's output for NCHW numpy ``images``, without autograd."""
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


# How far our fp32 logits may sit from a peer's, in multiples of the peer's own fp32-vs-float64 error: the
# gradient rule's factor. Both are about 5e-7..1e-6 from float64 and sum in different orders (a Linear
# against timm's 1x1-conv classifier), so their distance follows each CPU's rounding (AVX2 or AVX-512).
PEER_ROUNDING_MULTIPLE = 10


def within_peer_rounding(torch, peer: Any, ours: np.ndarray, images: np.ndarray,
                         run_peer: Callable[[Any, Any, np.ndarray], np.ndarray] = run) -> float:
    """``ours`` against ``peer``'s fp32 output for ``images`` (``run_peer(torch, peer, images)``); asserts the
    error is within :data:`PEER_ROUNDING_MULTIPLE` times the peer's own fp32 error against its float64 run,
    and returns it."""
    reference = run_peer(torch, peer, images)
    exact = run_peer(torch, copy.deepcopy(peer).double(), images.astype(np.float64))
    own = relative_error(reference, exact)
    error = relative_error(ours, reference)
    assert 0 < own and error <= PEER_ROUNDING_MULTIPLE * own, \
        f"relative error {error:.2e} against the peer, whose own fp32 error is {own:.2e}"
    return error


def assert_keras_matches(torch, peer: Any, record: Callable[[str, str, float], None], key: str,
                         size: tuple[int, int] = (HEIGHT, WIDTH), batch: int = BATCH, seed: int = 4,
                         keep_weights: bool = False) -> dict[str, np.ndarray] | None:
    """Import ``peer``, run it in our Keras model on this engine and assert within 1e-5 of the peer
    (recorded under ``key``); returns the Keras model's canonical weights when ``keep_weights``."""
    import keras

    spec, weights = rc.from_peer(peer)
    model = loaded(spec, weights, "keras")
    images = random_images(batch, *size, channels=spec.in_channels, seed=seed)
    out = keras.ops.convert_to_numpy(model(to_channels_last(images), training=False))
    error = relative_error(out, run(torch, peer, images))
    what = "logits" if spec.include_top else "features"
    record(key, f"keras[{keras.backend.backend()}] {what}", error)
    assert error < 1e-5
    got = rc.get_weights(model) if keep_weights else None
    keras.backend.clear_session()
    return got


def assert_refused(call: Callable[[], Any], texts: Iterable[str], error: type = rc.PeerError,
                   match: str | None = None) -> None:
    """``call`` raises ``error`` whose message holds every one of ``texts``."""
    with pytest.raises(error, match=match) as info:
        call()
    assert all(text in str(info.value) for text in texts), str(info.value)


def conv_linear_macs(torch, fvcore: Any, model: Any, shape: tuple[int, ...]) -> int:
    """fvcore's multiply-accumulates of the convolutions and linear layers of ``model`` for a zero input of
    ``shape``: what ``rc.summary`` counts (Table 1's convention)."""
    counter = fvcore.FlopCountAnalysis(model, torch.zeros(*shape))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    ops = counter.by_operator()
    return int(ops["conv"] + ops.get("linear", 0))
