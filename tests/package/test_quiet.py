"""Framework log lines are recognised (and only they), and a user's TF_CPP_MIN_LOG_LEVEL is never overridden."""

from __future__ import annotations

import pytest

from resnet_core.quiet import QUIET_TF_LOG_LEVEL, TF_LOG_LEVEL_VAR, is_framework_log, set_quiet_defaults

# Lines TensorFlow 2.21 printed here when Keras imported it (no GPU), and the glog and pre-2.16 formats.
TENSORFLOW_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796073360.501721    8115 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796073360.530499    8115 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "E0000 00:00:1796073380.322976    8115 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "W1130 21:14:50.123456 140234 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in other operations, "
    "rebuild TensorFlow with the appropriate compiler flags.",
]
OUR_LINES = [
    "resnet-core convert: error: No such file: 'missing.safetensors'",
    "resnet-core parity: keras-jax: ok in 12.3 s",
    "Traceback (most recent call last):",
    "ValueError: I0000 is not a log line when it does not start the line",
    "UserWarning: something in Python",
    "",
]


@pytest.mark.parametrize("line", TENSORFLOW_LINES)
def test_framework_log_lines_are_recognised(line):
    assert is_framework_log(line)


@pytest.mark.parametrize("line", OUR_LINES)
def test_other_lines_are_kept(line):
    assert not is_framework_log(line)


def test_quiet_default_never_overrides_the_user():
    env = {}
    assert set_quiet_defaults(env) is True and env == {TF_LOG_LEVEL_VAR: QUIET_TF_LOG_LEVEL}
    mine = {TF_LOG_LEVEL_VAR: "0"}
    assert set_quiet_defaults(mine) is False and mine == {TF_LOG_LEVEL_VAR: "0"}
