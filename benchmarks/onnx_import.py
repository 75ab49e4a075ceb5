"""ONNX import time: ``resnet_core.io.onnx_graph.import_onnx`` on a resnet50 (random weights, exported by
torch.onnx's TorchScript exporter with its batch norms kept) against what any ONNX user pays to run the
file, ``onnx.load`` plus ``onnxruntime.InferenceSession`` creation.

Three figures, each the median of ``--repeats`` runs alternating the sides, with its min-max spread:
the match alone (load, walk, names, spec, plan check), the whole import with its proof (our torch model
against onnxruntime on one 224x224 image), and the anchor. Target: the match alone within 1.5x the
anchor (the proof builds a torch model and runs two inferences, so it is reported, not targeted).
Exits 1 on a miss.

    python benchmarks/onnx_import.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

TARGET = 1.5


def _export(path: Path) -> None:
    import torch

    import resnet_core as rc
    from resnet_core.testing import random_weights

    model = rc.build("resnet50", backend="torch").eval()
    rc.set_weights(model, random_weights("resnet50"))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
                          do_constant_folding=False, input_names=["images"])


def _anchor(path: Path) -> float:
    import onnx
    import onnxruntime as ort

    start = time.perf_counter()
    model = onnx.load(str(path))
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return time.perf_counter() - start


def _match(path: Path) -> float:
    from resnet_core.io.onnx_graph import import_onnx

    start = time.perf_counter()
    import_onnx(path, verify=False)
    return time.perf_counter() - start


def _proven(path: Path) -> float:
    from resnet_core.io.onnx_graph import import_onnx

    start = time.perf_counter()
    found = import_onnx(path)
    assert found.verified
    return time.perf_counter() - start


def _row(name: str, times: list[float]) -> str:
    return f"{name:<34} {statistics.median(times):7.3f} s  (min {min(times):.3f}, max {max(times):.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        _export(path)
        _anchor(path), _match(path)  # warm the file cache and the imports alike
        sides: dict[str, list[float]] = {"match": [], "proven": [], "anchor": []}
        for _ in range(args.repeats):
            sides["anchor"].append(_anchor(path))
            sides["match"].append(_match(path))
            sides["proven"].append(_proven(path))
    print(_row("import_onnx (match, no proof)", sides["match"]))
    print(_row("import_onnx (with onnxruntime proof)", sides["proven"]))
    print(_row("onnx.load + InferenceSession", sides["anchor"]))
    ratio = statistics.median(sides["match"]) / statistics.median(sides["anchor"])
    print(f"match / anchor: {ratio:.2f} (target <= {TARGET})")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
