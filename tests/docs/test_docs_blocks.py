"""Every code block of the hand-written documentation pages runs as written, top to bottom, from a fresh folder.

Generated pages (``scripts/generate_docs.py`` writes them, starting with its marker) are left out; their
content is derived, not written. Labels follow ``doc_blocks.py``: ``text`` blocks are output samples, an
unlabelled block fails, and installation commands are not run. A page's Python blocks share one interpreter,
as a reader's session would; bash blocks run in the same folder in between, in a reader's shell (``python``
and ``resnet-core`` under test on PATH, no ``KERAS_BACKEND``). Selected by the ``readme`` tox env, a new
user's first run: Keras on its default engine unless a block says otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import GENERATED, ROOT, bash_argv, commands_env, failure, page_blocks, unlabelled

DOCS = ROOT / "docs"
# Pages that must be hand-written and hold running blocks (a page turning generated would drop its tests).
WITH_BLOCKS = {"getting-started.md", "concepts.md", "sources.md", "converting.md", "pretrained.md",
               "parity-report.md", "deploy.md", "distributed.md", "onnx-import.md"}

# A persistent interpreter: reads JSON-encoded blocks from stdin, runs each in one namespace.
_SESSION = r"""
import json, sys, traceback
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    code = json.loads(line)
    try:
        exec(compile(code, "<docs block>", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print("\n@@BLOCK FAILED@@", flush=True)
        sys.exit(1)
    print("\n@@BLOCK OK@@", flush=True)
"""


def hand_written() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not p.read_text(encoding="utf-8").startswith(GENERATED))


def pages() -> list[Path]:
    return [p for p in hand_written() if any(b.runs for b in page_blocks(p))]


def run_page(page: Path, folder: Path) -> None:
    env = commands_env(folder)
    python = subprocess.Popen([sys.executable, "-u", "-c", _SESSION], cwd=folder, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert python.stdin is not None and python.stdout is not None
    try:
        for block in (b for b in page_blocks(page) if b.runs):
            if block.lang == "bash":
                done = subprocess.run(bash_argv(block), cwd=folder, env=env, capture_output=True, text=True,
                                      timeout=900)
                assert done.returncode == 0, failure(block, done.returncode, done.stdout, done.stderr)
                continue
            python.stdin.write(json.dumps(block.body) + "\n")
            python.stdin.flush()
            output = []
            for line in python.stdout:
                if line.startswith("@@BLOCK"):
                    break
                output.append(line)
            assert line.startswith("@@BLOCK OK"), failure(block, 1, "".join(output), "")
    finally:
        python.stdin.close()
        python.kill()
        python.wait()


def test_pages_are_found_and_every_block_is_labelled():
    assert {p.name for p in pages()} >= WITH_BLOCKS
    bad = [where for page in hand_written() for where in unlabelled(page_blocks(page))]
    assert not bad, f"label each block bash, python or text (sample output): {bad}"


def test_folders_are_written_as_paths():
    """A bare name is a preset, never a path (docs/sources.md): a folder the docs save to is written ``./name``."""
    saved = re.compile(r"save_pretrained\([^,()]+,\s*[\"']([^\"']+)[\"']")
    texts = {p.relative_to(ROOT): p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *hand_written()]}
    bare = [f"{page}: {m.group(1)}" for page, text in texts.items() for m in saved.finditer(text)
            if not m.group(1).startswith(("./", "/", "../"))]
    assert not bare, f"write folders as ./NAME (a bare name is a preset): {bare}"
    assert sum(len(saved.findall(text)) for text in texts.values()) >= 2


@pytest.mark.readme
@pytest.mark.torch
@pytest.mark.keras
@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_blocks_run(page, tmp_path):
    folder = tmp_path / "fresh"
    folder.mkdir()
    run_page(page, folder)
