"""OpenVINO against ONNX Runtime on resnet50 at 224, fp32 and int8, side by side in one process (issue 22).

Both run our ONNX export. fp32: OpenVINO with INFERENCE_PRECISION_HINT=f32 (on a CPU with avx512_bf16 or AMX its
default silently computes in bf16: measured as its own row). int8: ONNX Runtime's static QDQ model (our
``export --quantize int8``) in both runtimes, and NNCF's post-training quantisation of the OpenVINO model, all
calibrated on the same images. Calls alternate round by round, so machine load slows every row alike.
Fidelity: max relative error and top-1 agreement of the logits against our fp32 torch model.

    PYTHONPATH=.:/work/ov-site python benchmarks/openvino_eval.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from inference import alternate  # noqa: E402 - the same round-robin timing as the inference benchmark

SIZE = 224


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    import onnxruntime as ort
    import openvino as ov
    import torch

    import resnet_core as rc
    from resnet_core.parity import topk_agreement
    from resnet_core.testing import random_images, random_weights, relative_error

    torch.set_num_threads(args.threads)
    weights = random_weights("resnet50")
    model = rc.build("resnet50", backend="torch", weights=weights).eval()
    evaluation = random_images(16, SIZE, SIZE, seed=3)
    with torch.inference_mode():
        reference = model(torch.from_numpy(evaluation)).numpy()
    runners = {}
    with tempfile.TemporaryDirectory(prefix="resnet-core-ov-") as tmp:
        work = Path(tmp)
        calibration = random_images(16, SIZE, SIZE, seed=1)
        np.save(work / "calibration.npy", calibration)
        rc.export(model, work / "r50.onnx", size=SIZE)
        rc.export(model, work / "r50.int8.onnx", size=SIZE, quantize="int8", calibration=work / "calibration.npy")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = args.threads
        for name, f in (("onnxruntime fp32", "r50.onnx"), ("onnxruntime int8 (QDQ)", "r50.int8.onnx")):
            session = ort.InferenceSession(str(work / f), options, providers=["CPUExecutionProvider"])
            runners[name] = lambda x, s=session: s.run(None, {"images": x})[0]
        core = ov.Core()
        base = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}

        def compiled(m, **config):
            c = core.compile_model(m, "CPU", {**base, **config})
            return lambda x, c=c: c(x)[0]

        fp32 = core.read_model(str(work / "r50.onnx"))
        runners["openvino fp32 (f32 hint)"] = compiled(fp32, INFERENCE_PRECISION_HINT="f32")
        runners["openvino default (bf16 where native)"] = compiled(fp32)
        runners["openvino int8 (ORT's QDQ model)"] = compiled(core.read_model(str(work / "r50.int8.onnx")),
                                                              INFERENCE_PRECISION_HINT="f32")
        try:
            import nncf

            quantized = nncf.quantize(core.read_model(str(work / "r50.onnx")),
                                      nncf.Dataset(list(np.split(calibration, 2))), subset_size=16)
            runners["openvino int8 (NNCF)"] = compiled(quantized, INFERENCE_PRECISION_HINT="f32")
        except ImportError as exc:
            print(f"NNCF not installed ({exc}): no NNCF row", file=sys.stderr)
        versions = {"openvino": ov.__version__, "onnxruntime": ort.__version__, "torch": torch.__version__}
        try:
            versions["nncf"] = nncf.__version__
        except NameError:
            pass
        fidelity = {}
        for name, fn in runners.items():
            out = np.concatenate([np.asarray(fn(b), np.float32) for b in np.split(evaluation, 2)])
            fidelity[name] = (relative_error(out, reference), topk_agreement(out, reference, 1))
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            x = random_images(batch, SIZE, SIZE, seed=2)
            for name, times in alternate(runners, dict.fromkeys(runners, x), args.repeats).items():
                rows.append({"runtime": name, "batch": batch, "median_ms": statistics.median(times) * 1e3,
                             "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
                             "max_rel_err": fidelity[name][0], "top1_agreement": fidelity[name][1]})
    print(f"resnet50 {SIZE}x{SIZE}, {args.threads} threads, {args.repeats} alternating rounds, load average "
          f"{os.getloadavg()[0]:.1f}; {json.dumps(versions)}")
    print("| runtime | batch | median ms | min-max | max rel err | top-1 agreement |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runtime']} | {r['batch']} | {r['median_ms']:.1f} | {r['min_ms']:.1f}-{r['max_ms']:.1f} | "
              f"{r['max_rel_err']:.2e} | {r['top1_agreement']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
