"""Weights and metrics for parity checks, framework-free so every engine sees identical inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import numpy as np

from .errors import InputError
from .layouts import Layout
from .plan import Norm, Plan, make_plan
from .presets import get_spec
from .spec import ResNetSpec


def random_weights(spec: str | ResNetSpec | Plan, seed: int = 0, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Canonical weights with non-trivial batch-norm statistics and affine parameters.

    Parity tests on freshly initialised models prove little: mean 0, variance 1, gamma 1 and beta 0
    hide a swapped or mis-ordered BN tensor, and zero biases hide a missing one. Here every tensor is
    distinct and away from its init value, scaled (He, fan-in) so activations stay finite in deep
    presets; the last norm of each residual branch is damped as a trained network's would be.
    """
    plan = spec if isinstance(spec, Plan) else make_plan(get_spec(spec))
    rng = np.random.default_rng(seed)
    # (a pre-activation branch ends in a bare conv: its kernel is damped instead)
    damped = {(block.main[-1].norm or block.main[-1].conv).name for block in plan.blocks}
    if plan.spec.std_conv:  # a standardised kernel cannot be damped: damp the norm feeding the bare last conv
        damped |= {cast(Norm, block.main[-2].norm).name for block in plan.blocks if block.main[-1].norm is None}
    out: dict[str, np.ndarray] = {}
    for p in plan.params:
        if p.role == "kernel":
            fan_in = int(np.prod(p.shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), p.shape) * (0.25 if p.module in damped else 1.0)
        elif p.role == "gamma":
            low, high = (0.1, 0.4) if p.module in damped else (0.5, 1.5)
            value = rng.uniform(low, high, p.shape)
        elif p.role in ("beta", "bias"):
            value = rng.normal(0.0, 0.2, p.shape)
        elif p.role == "moving_mean":
            value = rng.normal(0.0, 0.5, p.shape)
        elif p.role == "moving_variance":
            value = rng.uniform(0.5, 2.0, p.shape)
        elif p.role == "v":  # EvoNorm's gate slope: away from 1, some negative
            value = rng.uniform(-0.5, 1.5, p.shape)
        elif p.role == "tau":  # FRN's threshold: either side of 0, so the TLU clips both ways
            value = rng.normal(0.0, 0.3, p.shape)
        else:  # pragma: no cover - the plan's roles are listed above
            raise RuntimeError(f"Unknown role {p.role!r} for {p.name}")
        out[p.name] = value.astype(dtype)
    return out


def random_images(batch: int, height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """NCHW float32 images in roughly the range a normalised photo has."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, channels, height, width)).astype("float32")


def relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    """max |output - reference| / max |reference|: the figure every parity claim here uses."""
    output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    if output.shape != reference.shape:
        raise InputError(f"Shapes differ: output {output.shape} vs reference {reference.shape}")
    scale = np.abs(reference).max()
    return float(np.abs(output - reference).max() / (scale if scale > 0 else 1.0))


def to_channels_last(images: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC (contiguous), by :attr:`Layout.IMAGES`; other ranks are returned as they are."""
    return np.ascontiguousarray(Layout.IMAGES.to_framework(images)) if np.ndim(images) == 4 else images


def to_channels_first(images: np.ndarray) -> np.ndarray:
    """NHWC -> NCHW (contiguous): the inverse of :func:`to_channels_last`."""
    return np.ascontiguousarray(Layout.IMAGES.to_canonical(images)) if np.ndim(images) == 4 else images


def randomise_keras_variables(model: Any, seed: int = 0) -> Any:
    """Every variable of a Keras model (a peer's, say) set by its name and role, away from its init:
    BN statistics and affine terms non-trivial, kernels He-scaled by fan-in (all axes but the last)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        shape = tuple(v.shape)
        if v.name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif v.name in ("moving_mean", "beta", "bias"):
            value = rng.normal(0.0, 0.2, shape)
        elif v.name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        v.assign(value.astype("float32"))
    return model


def softmax(logits: Any) -> np.ndarray:
    """float64 softmax over the last axis: what a peer's softmax head should output for our logits."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def loaded(spec: str | ResNetSpec, weights: dict[str, Any], backend: str = "torch") -> Any:
    """Our model of ``spec`` on ``backend`` holding ``weights``; a torch model is put in eval mode."""
    from .api import build, set_weights

    model = build(spec, backend=backend)
    set_weights(model, weights)
    return model.eval() if backend == "torch" else model


def assert_same_weights(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Same names in the same order, and every tensor equal bit for bit in the same dtype."""
    assert list(got) == list(want)
    bad = [k for k in want if got[k].dtype != want[k].dtype or not np.array_equal(got[k], want[k])]
    assert not bad, f"tensors differ: {bad[:10]}"


def place_in_hf_cache(folder: str | os.PathLike, repo_id: str, hub_cache: str | os.PathLike,
                      revision: str = "main") -> Path:
    """Copy a model folder into a huggingface_hub cache as repo ``repo_id`` at branch ``revision``.

    The cache layout huggingface_hub reads offline: ``models--ORG--NAME/refs/<revision>`` holding a
    commit hash and ``snapshots/<hash>/`` holding the files (here as copies, not blob links). Returns
    the snapshot folder. Tests use it to build hub caches without a network.
    """
    import hashlib
    import shutil

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    digest = hashlib.sha1(repo_id.encode())
    for path in files:
        digest.update(path.read_bytes())
    commit = digest.hexdigest()
    repo = Path(hub_cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot
