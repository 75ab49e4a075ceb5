"""The suite's own rules (tests/conftest.py), checked by running pytest on a scratch test directory.

"A listed engine that fails to import fails the run rather than skipping", and a tox session that
ran no test fails instead of passing (pytest's exit code 5, or everything skipped).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

# A plugin loaded before the scratch conftest (-p): makes `import torch` fail as if torch were not installed.
BLOCK_TORCH = textwrap.dedent(
    """
    import sys as _sys

    class _BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    _sys.meta_path.insert(0, _BlockTorch())
    _sys.modules.pop("torch", None)
    """
)

TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.torch
    def test_needs_torch():
        import torch  # noqa: F401

    def test_plain():
        assert True
    """
)
UNMARKED = textwrap.dedent(
    """
    def test_forgot_its_marker(need):
        need("torch", "torch")
    """
)


def _run(tmp_path: Path, frameworks: str | None, *args: str, tests: str = TESTS) -> subprocess.CompletedProcess:
    (tmp_path / "block_torch.py").write_text(BLOCK_TORCH)
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_scratch.py").write_text(tests)
    ini = "[pytest]\nmarkers =\n    torch: t\n    keras: k\naddopts = -p no:cacheprovider\n"
    (tmp_path / "pytest.ini").write_text(ini)
    env = dict(os.environ)
    env.pop("RESNET_CORE_TEST_FRAMEWORKS", None)
    if frameworks is not None:
        env["RESNET_CORE_TEST_FRAMEWORKS"] = frameworks
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "block_torch", "-rA", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_listed_framework_that_fails_to_import_errors(tmp_path):
    proc = _run(tmp_path, "torch")
    assert proc.returncode == 1, proc.stdout
    assert "1 passed, 1 error" in proc.stdout
    assert "listed in RESNET_CORE_TEST_FRAMEWORKS" in proc.stdout


@pytest.mark.parametrize("frameworks", [None, "keras"], ids=["unset", "other-listed"])
def test_unlisted_missing_framework_skips(tmp_path, frameworks):
    proc = _run(tmp_path, frameworks)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout


@pytest.mark.parametrize(("frameworks", "selection"), [("", "keras"), ("torch", "torch")],
                         ids=["nothing-selected", "everything-skipped-or-errored"])
def test_session_without_a_passing_test_fails_under_tox(tmp_path, frameworks, selection):
    proc = _run(tmp_path, frameworks, "-m", selection)
    assert proc.returncode != 0, proc.stdout
    assert "no test passed" in proc.stderr


def test_no_selection_without_tox_keeps_pytest_exit_code(tmp_path):
    proc = _run(tmp_path, None, "-m", "keras")
    assert proc.returncode == 5, proc.stdout  # pytest's own "no tests collected/selected"


def test_a_test_needing_a_framework_without_its_marker_fails(tmp_path):
    """Unmarked, it would be skipped in the framework-free env and selected by no other: never run."""
    proc = _run(tmp_path, "", tests=UNMARKED)
    assert proc.returncode == 1, proc.stdout
    assert "is not marked @pytest.mark.torch: no tox env would run it" in proc.stdout
