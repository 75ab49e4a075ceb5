"""Every code block of README.md runs as written, in order, in one fresh empty folder, as a new user would.

Blocks follow the labels of ``doc_blocks.py``; each python block runs as a script of its own (the README says
each block runs as written), bash blocks stop at the first failing line. Installation commands are allowed only
under "The two commands". Selected by the ``readme`` tox env, which sets no ``KERAS_BACKEND``: Keras runs on
TensorFlow, as on a machine where the user chose nothing. The framework-free tests hold the README to what a
newcomer came for: at most 180 lines, the four examples, no measured figures.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import ROOT, Block, bash_argv, blocks, commands_env, failure, unlabelled

from resnet_core.io import write_weights
from resnet_core.quiet import TF_LOG_LEVEL_VAR, is_framework_log
from resnet_core.testing import random_weights

README = ROOT / "README.md"
INSTALL_SECTION = "The two commands"
MAX_LINES = 180
# What the four examples must show, in this order: build with the env var, convert, from_peer, parity.
EXAMPLES = ("RESNET_CORE_BACKEND=", "resnet-core convert ", "rc.from_peer(", "resnet-core parity ")
# A measured figure: a number in scientific notation (1.2e-06, 2e-6), a ratio (2.3x) or a timing (0.91 s).
FIGURE = re.compile(r"\b\d+(?:\.\d+)?e-?\d+\b|\b\d+\.\d+(?:x\b| ?m?s\b)")


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_figure_pattern() -> None:
    found = [m.group(0) for m in FIGURE.finditer("2.0e-06, 2e-6 and 1.9x in 0.91 s; not 65x77, resnet50 or 3.11")]
    assert found == ["2.0e-06", "2e-6", "1.9x", "0.91 s"]


def test_block_extraction_sees_every_fence() -> None:
    text = "# A\n```bash\necho 1\n```\n## B\n```python\nprint(2)\n```\n```text\nout\n```\n"
    assert [(b.lang, b.body, b.line, b.section) for b in blocks(text)] == [
        ("bash", "echo 1\n", 2, "A"), ("python", "print(2)\n", 6, "B"), ("text", "out\n", 9, "B")]
    assert readme().count("```") == 2 * len(blocks(readme()))


def test_every_block_is_labelled_and_installs_are_only_the_two_commands() -> None:
    found = blocks(readme())
    assert not unlabelled(found), f"label each block bash, python or text (sample output): {unlabelled(found)}"
    installs = [b for b in found if b.is_install]
    assert [b.section for b in installs] == [INSTALL_SECTION] * 2, [str(b) for b in installs]
    # The test-suite command is what CI runs, verbatim.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in [b.body.strip() for b in installs]


def test_readme_is_what_a_newcomer_came_for() -> None:
    lines = readme().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; at most {MAX_LINES} (move the rest to docs/)"
    code = "\n".join(b.body for b in blocks(readme()) if b.runs)
    where = [code.find(example) for example in EXAMPLES]
    assert -1 not in where and where == sorted(where), f"the four examples, in order: {EXAMPLES}"
    # The parity example's figures reproduce: the checkpoint it checks is made from seeded weights.
    assert code.find("torch.manual_seed(") in range(0, where[1]), "seed the weights before the parity example"
    figures = [f"README.md:{i}: {m.group(0)}" for i, line in enumerate(lines, 1) for m in FIGURE.finditer(line)]
    assert not figures, f"measured figures belong in docs/benchmarks.md or docs/parity.md: {figures}"


def _written_by_convert(body: str) -> list[str]:
    """The outputs of the ``resnet-core convert SRC OUT`` lines of a bash block."""
    outputs = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["resnet-core", "convert"]:
            outputs.append([w for w in words[2:] if not w.startswith("-")][1])
    return outputs


def _run(block: Block, folder: Path, index: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = bash_argv(block)
    if block.lang == "python":
        script = folder.parent / f"readme_block_{index}.py"
        script.write_text(block.body, encoding="utf-8")
        argv = [sys.executable, str(script)]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.readme
@pytest.mark.torch
@pytest.mark.keras
def test_readme_blocks_run_in_order_in_a_fresh_folder(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    env = commands_env(folder)
    runs = [b for b in blocks(readme()) if b.runs]
    for index, block in enumerate(runs):
        proc = _run(block, folder, index, env)
        assert proc.returncode == 0, failure(block, proc.returncode, proc.stdout, proc.stderr)
        for output in _written_by_convert(block.body) if block.lang == "bash" else []:
            assert (folder / output).is_file(), f"{block}: `resnet-core convert` reported success but wrote no {output}"
        if block.lang == "bash" and "resnet-core " in block.body:
            noisy = [ln for ln in proc.stderr.splitlines() if is_framework_log(ln)]
            assert not noisy, f"{block}: framework log lines on stderr of our commands: {noisy[:3]}"
    assert len(runs) >= len(EXAMPLES)
    assert not list(folder.glob(".*.partial*")), "a conversion left a partial file behind"


@pytest.mark.readme
@pytest.mark.keras
def test_cli_is_quiet_without_keras_backend(tmp_path: Path) -> None:
    """Keras on its default engine (TensorFlow): our command's stderr holds no TensorFlow/CUDA log line."""
    write_weights(tmp_path / "tiny.safetensors", random_weights("tiny_resnext"), "tiny_resnext")
    env = commands_env(tmp_path / "x")
    proc = subprocess.run([sys.executable, "-m", "resnet_core.cli", "convert", "tiny.safetensors", "tiny.keras"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tiny.keras").is_file()
    assert proc.stderr == "", f"expected a silent stderr, got: {proc.stderr[:2000]}"
    # The filter is what makes it quiet: with the user's own level, TensorFlow's pre-init lines come back.
    env[TF_LOG_LEVEL_VAR] = "0"
    loud = subprocess.run([sys.executable, "-m", "resnet_core.cli", "convert", "tiny.safetensors", "loud.keras"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0, loud.stderr
    assert any(is_framework_log(ln) for ln in loud.stderr.splitlines()), loud.stderr[:2000]
