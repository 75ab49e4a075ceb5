"""Quiet frameworks in our own commands: TensorFlow's C++ start-up logs are not the user's business.

Keras without ``KERAS_BACKEND`` runs on TensorFlow, whose import prints lines such as "Could not find cuda
drivers" or "failed call to cuInit". ``TF_CPP_MIN_LOG_LEVEL`` silences most of them, but TensorFlow writes a
few before its logger reads the variable, straight to file descriptor 2. So the command line (and the parity
workers) set the variable when the user has not, and the command line filters those lines out of fd 2.
A user's own ``TF_CPP_MIN_LOG_LEVEL`` is never overridden, and then nothing is filtered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping

TF_LOG_LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "3"  # INFO, WARNING and ERROR lines off; Python exceptions are unaffected

# absl/glog lines ("I0000 00:00:1796073360.501721    8115 port.cc:153] ..."; before absl is initialised the
# seconds field holds the whole epoch time), TensorFlow's older timestamped lines
# ("2025-09-17 14:44:05.157: I external/..."), absl's pre-initialisation banner, and the continuation
# line of TensorFlow's CPU-feature notice.
_FRAMEWORK_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-/]+:\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: )"
)


def is_framework_log(line: str) -> bool:
    """True for a line a framework's C++ logger wrote (not a Python warning or exception)."""
    return bool(_FRAMEWORK_LOG.match(line))


def set_quiet_defaults(env: MutableMapping[str, str] | None = None) -> bool:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` in ``env`` (default: this process) unless the user has; True if we did."""
    env = os.environ if env is None else env
    if TF_LOG_LEVEL_VAR in env:
        return False
    env[TF_LOG_LEVEL_VAR] = QUIET_TF_LOG_LEVEL
    return True


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Drop framework log lines that C++ code writes to fd 2; Python's ``sys.stderr`` is left untouched.

    Python output (errors, progress bars, warnings) keeps writing to the original stderr, so a terminal stays
    a terminal; only native writes to fd 2 pass through a line filter, in a thread.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None),
                           errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source, os.fdopen(os.dup(original), "wb", buffering=0) as sink:
            for line in source:
                if not is_framework_log(line.decode("utf-8", "replace")):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="resnet-core-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump reads to the end and stops
        os.close(original)
        thread.join(timeout=2)
        sys.stderr.close()
        sys.stderr = python_stderr
