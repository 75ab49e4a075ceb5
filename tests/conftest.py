"""Shared test plumbing: framework gating, the Keras engine check, the no-test guard and parity figures.

Framework rule (from the design notes): "a listed engine that fails to import fails the run rather
than skipping". tox lists the frameworks each env must have in ``RESNET_CORE_TEST_FRAMEWORKS``
(comma separated: ``torch``, ``keras``). A test marked ``torch`` or ``keras`` whose framework is
listed but does not import ERRORS; when the variable is unset (a developer's ad-hoc run), a
missing framework skips the test instead. Test modules never import a framework at module level,
so the core env collects every file without torch or keras installed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS_VAR = "RESNET_CORE_TEST_FRAMEWORKS"
# marker -> modules a test with that marker imports
MARKER_MODULES = {"torch": ("torch",), "keras": ("keras",)}


def listed_frameworks() -> set[str] | None:
    """The frameworks this run must have, or None when the variable is unset (ad-hoc run)."""
    raw = os.environ.get(FRAMEWORKS_VAR)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


# Peers that reach triton through torch._dynamo, only to ask whether it is installed.
TRITON_PROBERS = ("torchvision", "timm", "transformers")


def _no_triton_after_tensorflow() -> None:
    """Loading triton after TensorFlow segfaults (their LLVM copies clash). TensorFlow is loaded by the
    time peer tests run in every Keras env: keras-tensorflow's engine is TensorFlow, and keras-hub
    imports it on every engine. No GPU kernels run here, so triton is hidden.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # `import triton` raises ImportError: torch reports no triton


_current: list[pytest.Item] = []  # the test being set up or run, for require's marker rule


def require(framework: str, module: str):
    """Import ``module`` for a test needing ``framework``: error if listed, skip if merely absent.

    A test that needs a framework but lacks its marker fails instead: tox selects tests by marker,
    so such a test would only ever be skipped (in the framework-free env) and never run.
    """
    if module in TRITON_PROBERS:
        _no_triton_after_tensorflow()
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a framework failing during its own import
        listed = listed_frameworks()
        if listed is not None and framework in listed:
            pytest.fail(
                f"{module!r} failed to import, but {framework!r} is listed in "
                f"{FRAMEWORKS_VAR}={os.environ[FRAMEWORKS_VAR]!r}: {type(exc).__name__}: {exc}",
                pytrace=False,
            )
        item = _current[-1] if _current else None
        if item is not None and item.get_closest_marker(framework) is None:
            pytest.fail(f"{item.nodeid} needs {module!r} but is not marked @pytest.mark.{framework}: no tox env "
                        "would run it", pytrace=False)
        pytest.skip(f"{module!r} is not importable ({type(exc).__name__}: {exc})")
    if module == "keras":
        _check_keras_engine(mod)
    return mod


@pytest.fixture(scope="module")
def torch(need):
    """PyTorch, on two threads (the CI machine's cores)."""
    torch = need("torch", "torch")
    torch.set_num_threads(2)
    return torch


@pytest.fixture(scope="module")
def timm(need, torch):
    """timm (a torch peer), for the timm test files."""
    return need("torch", "timm")


@pytest.fixture(scope="session")
def need():
    """``need(framework, module)``: import an extra module under the same error-or-skip rule."""
    return require


def _check_keras_engine(keras) -> None:
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted and keras.backend.backend() != wanted:
        pytest.fail(
            f"KERAS_BACKEND={wanted!r} but Keras runs on {keras.backend.backend()!r}: the env is mis-set",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, modules in MARKER_MODULES.items():
        if item.get_closest_marker(marker) is not None:
            for module in modules:
                require(marker, module)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"{FRAMEWORKS_VAR}={os.environ.get(FRAMEWORKS_VAR)!r} "
        f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}"
    ]


# ---------------------------------------------------------------------------------------------
# The no-test guard: under tox (the frameworks variable is set, even empty) a session in which no
# test passed fails with a message, whether nothing was selected (pytest exit code 5) or
# everything skipped.

_passed = 0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # pytest-xdist sets it on its workers (tox runs -n 2)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _xdist_worker(session.config):  # the controller counts every worker's passes and holds the guard
        session.config.workeroutput["parity"] = json.dumps(_PARITY)  # type: ignore[attr-defined]
        return
    if listed_frameworks() is not None and _passed == 0 and not session.config.option.collectonly:
        sys.stderr.write(
            f"\nERROR: no test passed in this session (exit status was {int(exitstatus)}); "
            f"{FRAMEWORKS_VAR} is set, so this run must execute tests. Check the -m selection.\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------------------------------------
# Parity figures: tests call ``parity_record(preset, what, error)``; the worst error per preset is
# printed at the end of the run (no -s needed) and written as JSON under pytest's base temp dir.

_PARITY: dict[str, dict[str, float]] = {}
_PARITY_DIR: list[Path] = []


@pytest.fixture(scope="session")
def parity_record(tmp_path_factory: pytest.TempPathFactory):
    _PARITY_DIR[:] = [tmp_path_factory.getbasetemp()]

    def record(preset: str, what: str, error: float) -> None:
        _PARITY.setdefault(preset, {})[what] = float(error)
        print(f"[parity] {preset} {what}: relative error {error:.3e}")

    return record


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist: a worker finished; its parity figures join the controller's summary."""
    for preset, figures in json.loads(getattr(node, "workeroutput", {}).get("parity", "{}")).items():
        _PARITY.setdefault(preset, {}).update(figures)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _PARITY:
        return
    engine = os.environ.get("KERAS_BACKEND", "none")
    tr = terminalreporter
    tr.section(f"worst relative error per preset (KERAS_BACKEND={engine})")
    width = max(len(p) for p in _PARITY)
    tr.write_line(f"{'preset':{width}s}  {'logits':>9s}  {'other':>9s}  worst of all")
    for preset, figures in sorted(_PARITY.items()):
        logits = [e for w, e in figures.items() if "logits" in w]
        other = [e for w, e in figures.items() if "logits" not in w]
        what, worst = max(figures.items(), key=lambda kv: kv[1])
        cells = [f"{max(v):9.3e}" if v else f"{'-':>9s}" for v in (logits, other)]
        tr.write_line(f"{preset:{width}s}  {cells[0]}  {cells[1]}  {what} ({len(figures)} figures)")
    if _PARITY_DIR:
        path = _PARITY_DIR[0] / f"parity-{engine}.json"
        path.write_text(json.dumps({"engine": engine, "errors": _PARITY}, indent=2, sort_keys=True))
        tr.write_line(f"figures written to {path}")


# ---------------------------------------------------------------------------------------------
# Subprocess helper: run Python in a clean interpreter, outside the source tree.


@pytest.fixture
def run_python(tmp_path: Path):
    """Run ``code`` in a fresh interpreter; return the CompletedProcess (check with .returncode).

    The child runs in ``tmp_path`` so that it imports the INSTALLED resnet_core, never the source
    tree (whose ``backends/`` folder only becomes ``resnet_core.backends`` once installed).
    ``env`` entries replace the parent's; a value of None removes the variable.
    """

    def run(code: str, env: dict[str, str | None] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        child_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                child_env.pop(key, None)
            else:
                child_env[key] = value
        return subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=child_env, capture_output=True, text=True,
            timeout=timeout,
        )

    return run
