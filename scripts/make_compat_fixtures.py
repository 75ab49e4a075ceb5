"""Write tests/fixtures/<release>/: files as a release wrote them, which every later release must keep loading.

Run once, with the release whose files they stand for, before a change of format or of the spec
(v0_1: 0.1, the flat 38-field ResNetSpec; v0_2: sub-specs and spec JSON "format": 2):

    KERAS_BACKEND=jax python scripts/make_compat_fixtures.py v0_2

It writes, for the specs in ``SPECS`` (tiny widths: the files are kilobytes):
- ``specs/<name>.json``: ``spec.to_json()``, the spec JSON files users saved;
- ``kwargs.json``: the flat keywords each spec was built from (the test rebuilds it from them);
- ``plans.json``: each spec's plan, every tensor's canonical name and shape (the network the file means);
- ``weights/<name>.{safetensors,pth,weights.h5,keras}`` for the specs in ``WEIGHTED`` (in the formats
  given), and a transformers-layout ``save_pretrained`` folder of one of them, written from seeded random weights;
- ``logits.npz``: the eval-mode torch logits of each weighted spec on ``input`` (also stored).

tests/spec/test_compat_fixtures.py loads them with the current code and asserts the same spec and the same
network, with torch logits bit-identical to the stored ones. Do not regenerate them with a later release:
they are the record of what 0.1 wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / (sys.argv[1] if len(sys.argv) > 1 else "v0_1")
SIZE = (1, 3, 35, 37)  # one odd-sized image

_TINY = {"stem_width": 4, "base_planes": 4, "num_classes": 5}
# name -> the flat keywords of 0.1's ResNetSpec, across the families and their dependent fields.
SPECS: dict[str, dict] = {
    "resnet18_like": {"block": "basic", "layers": [1, 1, 1, 1], **_TINY},
    "resnet18d_like": {"block": "basic", "layers": [1, 1, 1, 1], "stem": "deep", "downsample": "avg", **_TINY},
    "resnext_d": {"layers": [1, 2, 1, 1], "groups": 2, "width_per_group": 16, "stem": "deep", "downsample": "avg",
                  **_TINY},
    "seresnext": {"layers": [1, 1, 1], "groups": 2, "width_per_group": 32, "attention": "se", "se_ratio": 0.25,
                  **_TINY},
    "ecaresnet_t_kernels": {"layers": [1, 1, 1, 1], "stem": "deep_tiered", "downsample": "avg", "attention": "eca",
                            "eca_kernels": [3, 5, 1, 7], **_TINY},
    "keras_v2_like": {"layers": [1, 2, 1], "preact": True, "stride_block": "last", "conv_bias": True,
                      "stem_pool_padding": "zero", "bn_eps": 1.001e-5, "bn_momentum": 0.01, **_TINY},
    "bit_group_std": {"layers": [1, 1, 1], "preact": True, "norm": "group", "norm_groups": 4, "std_conv": True,
                      "std_conv_eps": 1e-8, "stem_pool_padding": "zero", **_TINY},
    "evos_d": {"layers": [1, 1], "preact": True, "norm": "evo_s0", "norm_groups": 2, "stem": "deep",
               "downsample": "avg", **_TINY},
    "frn_std": {"block": "basic", "layers": [1, 1], "preact": True, "norm": "frn", "std_conv": True,
                "std_conv_eps": 1e-6, "bn_eps": 1e-4, **_TINY},
    "gn_post": {"layers": [1, 1], "norm": "group", "norm_groups": 2, **_TINY},
    "per_stage": {"block": "basic", "layers": [1, 1, 1, 1], "block_types": ["basic", "basic", "bottleneck", "basic"],
                  "base_planes": 8, "planes": [8, 12, 12, 24], "stem": "deep", "stem_width": 8,
                  "downsample": "avg", "num_classes": 5},
    "pruned_eca": {"layers": [1, 2], "stem": "deep", "stem_width": 8, "downsample": "avg", "attention": "eca",
                   "block_widths": [[4, 6, 16], [5, 3, 24], [6, 7, 24]], "eca_kernels": [3, 5], "num_classes": 5},
    "features_max": {"block": "basic", "layers": [1, 1, 1], "include_top": False, "pooling": "max", **_TINY},
    "timm_options": {"layers": [1, 1, 1], "anti_alias": "blur", "reduce_first": 2, "down_kernel_size": 3,
                     "output_stride": 16, "project_first": True, "zero_init_residual": True, "in_channels": 1,
                     "groups": 2, "width_per_group": 32, **_TINY},
    "rs_like": {"layers": [1, 1], "stem": "deep", "downsample": "avg", "replace_stem_pool": True,
                "attention": "se", "se_ratio": 0.5, "stride_in_1x1": False, **_TINY},
    "keras_v1_like": {"layers": [1, 1], "stride_in_1x1": True, "conv_bias": True, "bn_eps": 1.001e-5,
                      "bn_momentum": 0.01, **_TINY},
    # Fields 0.1 kept but that change nothing here (compared as their defaults): old files hold such values.
    "unused_values": {"block": "basic", "layers": [1, 1], "se_ratio": 0.25, "norm_groups": 8, "std_conv_eps": 1e-3,
                      "stem_pool_padding": "zero", "include_top": False, "num_classes": 7, "bn_momentum": 0.2,
                      **{k: v for k, v in _TINY.items() if k != "num_classes"}},
}
FORMATS = (".safetensors", ".pth", ".weights.h5", ".keras")
# name -> the formats its weights are written in (Keras files weigh ~0.2 MB of overhead each: a few specs only)
WEIGHTED = {"resnet18d_like": FORMATS, "seresnext": FORMATS, "bit_group_std": FORMATS, "keras_v2_like": FORMATS,
            "pruned_eca": FORMATS[:2], "resnet18_like": FORMATS[:2]}
PRETRAINED = "resnet18_like"  # written as a transformers-layout save_pretrained folder too (timm's needs its names)


def fixture_input() -> np.ndarray:
    return np.random.default_rng(2026).standard_normal(SIZE).astype(np.float32)


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.eval()(torch.from_numpy(images)).numpy()


def main() -> None:
    import resnet_core as rc
    from resnet_core.testing import loaded, random_weights

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "specs").mkdir(parents=True)
    (OUT / "weights").mkdir()
    specs = {name: rc.ResNetSpec(**kwargs, name=name) for name, kwargs in SPECS.items()}
    (OUT / "kwargs.json").write_text(json.dumps(SPECS, indent=1, sort_keys=True) + "\n")
    plans = {name: [[p.name, list(p.shape)] for p in rc.make_plan(spec).params] for name, spec in specs.items()}
    (OUT / "plans.json").write_text(json.dumps(plans, sort_keys=True) + "\n")
    for name, spec in specs.items():
        (OUT / "specs" / f"{name}.json").write_text(spec.to_json() + "\n")
    images = fixture_input()
    logits = {"input": images}
    for seed, name in enumerate(WEIGHTED):
        spec = specs[name]
        weights = random_weights(spec, seed=seed)
        logits[name] = torch_logits(loaded(spec, weights, "torch"), images if spec.in_channels == 3 else images[:, :1])
        for ext in WEIGHTED[name]:
            rc.write_weights(OUT / "weights" / f"{name}{ext}", weights, spec)
        if name == PRETRAINED:
            rc.save_pretrained(weights, OUT / "weights" / f"{name}_transformers", layout="transformers", spec=spec)
    np.savez(OUT / "logits.npz", **logits)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
