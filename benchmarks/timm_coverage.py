"""Coverage of timm's ResNet families: which pretrained architectures ``rc.from_peer`` imports.

Every architecture of timm's ``resnet``, ``resnetv2``, ``resnest``, ``res2net`` and ``sknet`` modules (MODULES)
with published weights (tags de-duplicated) is built with random weights (nothing is downloaded) and imported;
refusals are grouped by their reason. With ``--parity``, each imported model is also run against timm at an odd
input size with perturbed BatchNorm statistics, on our torch model (``--keras`` adds the Keras model
on the current KERAS_BACKEND engine). Large models take minutes and gigabytes: ``--only`` / ``--skip``.

    python benchmarks/timm_coverage.py [--parity] [--keras] [--only a,b] [--skip a,b] [--max-params 2e8]

Exit status 1 when any architecture is refused (or, with ``--parity``, misses its tolerance).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import resnet_core as rc  # noqa: E402
from resnet_core.peers import PeerError  # noqa: E402

SIZE = (97, 129)  # odd; timm's avg-pool anti-aliasing (resnetaa*) fails at 65x77 (odd sizes inside the net)
MODULES = ("resnet", "resnetv2", "resnest", "res2net", "sknet")  # timm's modules building on its ResNet classes
KERAS_TOLERANCE = 1e-5
TORCH_TOLERANCE = 1e-6


def architectures() -> list[str]:
    import timm

    names = {n.split(".")[0] for m in MODULES for n in timm.list_models(module=m, pretrained=True)}
    return sorted(names)


def _perturb_norms(model) -> None:
    """Random BatchNorm statistics and affine terms, so a misplaced norm shows in the logits."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _ours(spec: rc.ResNetSpec, weights: dict, backend: str):
    model = rc.build(spec, backend=backend)
    rc.set_weights(model, weights)
    return model


def parity(model, keras: bool) -> dict[str, float]:
    import torch

    x = np.random.default_rng(0).standard_normal((1, 3, *SIZE)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    spec, weights = rc.from_peer(model)
    ours = _ours(spec, weights, "torch").eval()
    with torch.no_grad():
        out = {"torch": _rel(ours(torch.from_numpy(x)).numpy(), ref)}
    del ours
    if keras:
        import keras as k

        km = _ours(spec, weights, "keras")
        out[f"keras-{k.backend.backend()}"] = _rel(np.asarray(km(x.transpose(0, 2, 3, 1), training=False)), ref)
        del km
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parity", action="store_true", help="run each imported model against timm")
    parser.add_argument("--keras", action="store_true", help="with --parity: the Keras model too")
    parser.add_argument("--only", default="", help="comma-separated architectures")
    parser.add_argument("--skip", default="", help="comma-separated architectures to leave out")
    parser.add_argument("--max-params", type=float, default=0, help="skip timm models with more parameters")
    args = parser.parse_args(argv)
    import timm
    import torch

    torch.manual_seed(0)
    names = [n for n in architectures() if (not args.only or n in args.only.split(","))
             and n not in args.skip.split(",")]
    refused: dict[str, list[str]] = {}
    imported, misses, skipped = [], [], []
    for name in names:
        start = time.perf_counter()
        model = timm.create_model(name, pretrained=False).eval()
        params = sum(p.numel() for p in model.parameters())
        if args.max_params and params > args.max_params:
            skipped.append(name)
            continue
        try:
            rc.from_peer(model)
        except PeerError as exc:
            refused.setdefault(str(exc).split(": ", 1)[-1][:160], []).append(name)
            print(f"REFUSED  {name}: {exc}", flush=True)
        else:
            imported.append(name)
            line = f"imported {name} ({params / 1e6:.1f}M)"
            if args.parity:
                _perturb_norms(model)
                errors = parity(model, args.keras)
                tol = {k: TORCH_TOLERANCE if k == "torch" else KERAS_TOLERANCE for k in errors}
                bad = [k for k, v in errors.items() if v > tol[k]]
                misses += [f"{name} {k}" for k in bad]
                line += "  " + "  ".join(f"{k} {v:.1e}" for k, v in errors.items()) + ("  MISS" if bad else "")
            print(f"{line}  [{time.perf_counter() - start:.1f} s]", flush=True)
        del model
        gc.collect()
    print(f"\n{len(imported)} of {len(names) - len(skipped)} architectures import"
          + (f" ({len(skipped)} skipped by --max-params: {', '.join(skipped)})" if skipped else ""))
    for reason, which in sorted(refused.items(), key=lambda kv: -len(kv[1])):
        print(f"  refused ({len(which)}): {', '.join(which)}\n      {reason}")
    if misses:
        print(f"tolerance missed: {', '.join(misses)}")
    return 1 if refused or misses else 0


if __name__ == "__main__":
    sys.exit(main())
