"""Helpers for tests and examples. Production code imports none of this module: the random weights and
images live in :mod:`resnet_core.random_weights`, the error metric and image layouts in
:mod:`resnet_core.arrays`; they are re-exported here for tests and docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import relative_error, to_channels_first, to_channels_last
from .random_weights import random_images, random_weights
from .spec import ResNetSpec

__all__ = [
    "assert_same_weights", "loaded", "place_in_hf_cache", "random_images", "random_weights",
    "randomise_keras_variables", "relative_error", "softmax", "to_channels_first", "to_channels_last",
]


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
