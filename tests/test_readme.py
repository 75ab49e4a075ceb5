"""Every code block of README.md runs as written, in order, in one fresh empty folder, as a new user would.

Block labels are the convention: ```bash (run by bash, stopping at the first failing line), ```python (run
as a script), ```text (sample output, not run). A block without one of these labels fails the test, so a
new block cannot be skipped by accident.

Not run here: installation commands, i.e. bash blocks that start by creating a virtual environment
(``python3 -m venv``). They are allowed only under "The two commands", and CI proves them itself: ``.ci/run``
runs the test-suite command verbatim (checked below) and the main job is the command this suite's
environment was installed by. Selected by the ``readme`` tox env, which sets no ``KERAS_BACKEND``: Keras runs
on TensorFlow, as on a machine where the user chose nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from resnet_core.io import write_weights
from resnet_core.quiet import TF_LOG_LEVEL_VAR, is_framework_log
from resnet_core.testing import random_weights

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNERS = ("bash", "python")
NOT_RUN = ("text",)
INSTALL = "python3 -m venv "
INSTALL_SECTION = "The two commands"

_FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # of the opening fence, 1-based
    section: str  # the nearest heading above

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang} block under '{self.section}')"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, in order, with its language and the heading it sits under."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.M)
        blocks.append(Block(match["lang"].strip(), match["body"], before.count("\n") + 1,
                            headings[-1] if headings else ""))
    return blocks


def is_install(block: Block) -> bool:
    return block.lang == "bash" and block.body.lstrip().startswith(INSTALL)


def test_block_extraction_sees_every_fence() -> None:
    text = "# A\n```bash\necho 1\n```\n## B\n```python\nprint(2)\n```\n```text\nout\n```\n"
    blocks = readme_blocks(text)
    assert [(b.lang, b.body, b.line, b.section) for b in blocks] == [
        ("bash", "echo 1\n", 2, "A"), ("python", "print(2)\n", 6, "B"), ("text", "out\n", 9, "B")]
    assert README.read_text(encoding="utf-8").count("```") == 2 * len(readme_blocks(README.read_text("utf-8")))


def test_every_block_is_labelled_and_installs_are_only_the_two_commands() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    unlabelled = [str(b) for b in blocks if b.lang not in RUNNERS + NOT_RUN]
    assert not unlabelled, f"label each block bash, python or text (sample output): {unlabelled}"
    installs = [b for b in blocks if is_install(b)]
    assert [b.section for b in installs] == [INSTALL_SECTION] * 2, [str(b) for b in installs]
    # The test-suite command is what CI runs, verbatim.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in [b.body.strip() for b in installs]


def _commands_env(folder: Path) -> dict[str, str]:
    """This interpreter's environment first on PATH, so ``python`` and ``resnet-core`` are the ones under test.

    In a source checkout (no console script installed) a ``resnet-core`` shim runs ``python -m resnet_core.cli``.
    """
    bin_dir = Path(sys.executable).parent
    path = [str(bin_dir)]
    if not (bin_dir / "resnet-core").exists():
        shim = folder.parent / "shim-bin"
        shim.mkdir(exist_ok=True)
        script = shim / "resnet-core"
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m resnet_core.cli "$@"\n')
        script.chmod(0o755)
        path.insert(0, str(shim))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    env.pop(TF_LOG_LEVEL_VAR, None)  # a user's shell: nothing set
    env["MPLBACKEND"] = "Agg"
    return env


def _run(block: Block, folder: Path, index: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    if block.lang == "python":
        script = folder.parent / f"readme_block_{index}.py"
        script.write_text(block.body, encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.body]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def _written_by_convert(body: str) -> list[str]:
    """The outputs of the ``resnet-core convert SRC OUT`` lines of a bash block."""
    outputs = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["resnet-core", "convert"]:
            outputs.append([w for w in words[2:] if not w.startswith("-")][1])
    return outputs


@pytest.mark.readme
@pytest.mark.torch
@pytest.mark.keras
def test_readme_blocks_run_in_order_in_a_fresh_folder(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    env = _commands_env(folder)
    blocks = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.lang in RUNNERS]
    ran = 0
    for index, block in enumerate(blocks):
        if is_install(block):
            continue
        proc = _run(block, folder, index, env)
        assert proc.returncode == 0, (f"{block} exited {proc.returncode}\n--- block\n{block.body}"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
        for output in _written_by_convert(block.body) if block.lang == "bash" else []:
            assert (folder / output).is_file(), f"{block}: `resnet-core convert` reported success but wrote no {output}"
        if block.lang == "bash" and "resnet-core " in block.body:
            noisy = [ln for ln in proc.stderr.splitlines() if is_framework_log(ln)]
            assert not noisy, f"{block}: framework log lines on stderr of our commands: {noisy[:3]}"
        ran += 1
    assert ran >= 5, f"only {ran} README blocks ran"
    assert not list(folder.glob(".*.partial*")), "a conversion left a partial file behind"


@pytest.mark.readme
@pytest.mark.keras
def test_cli_is_quiet_without_keras_backend(tmp_path: Path) -> None:
    """Keras on its default engine (TensorFlow): our command's stderr holds no TensorFlow/CUDA log line."""
    write_weights(tmp_path / "tiny.safetensors", random_weights("tiny_resnext"), "tiny_resnext")
    env = _commands_env(tmp_path / "x")
    env.pop("KERAS_BACKEND", None)
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
