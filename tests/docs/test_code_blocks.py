"""The Python blocks of docs/api.md and README.md run as written, in order, one document per process, in a
temporary folder; a block whose first line is ``# not run`` is skipped, and so is every non-Python block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["docs/api.md", "README.md"]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)

RUNNER = r'''
import sys, traceback
from pathlib import Path
blocks = eval(Path(sys.argv[1]).read_text())
namespace = {"__name__": "__doc_blocks__"}
for line, code in blocks:
    try:
        exec(compile(code, f"{sys.argv[2]}:{line}", "exec"), namespace)
    except BaseException:
        print(f"the block at {sys.argv[2]} line {line} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    print(f"block at line {line}: ok", file=sys.stderr)
'''


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every runnable Python block."""
    out = []
    for m in FENCE.finditer(text):
        code = m.group(1)
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        if first.lower().startswith("# not run"):
            continue
        out.append((text.count("\n", 0, m.start(1)) + 1, code))
    return out


def test_blocks_are_found_and_not_run_blocks_skipped():
    text = ("a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\n# not run: needs a GPU\ny = 2\n```\n"
            "```python\nz = 3\n```\n")
    assert python_blocks(text) == [(3, "x = 1\n"), (13, "z = 3\n")]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_python_blocks_of(document, tmp_path):
    blocks = python_blocks((ROOT / document).read_text())
    if not blocks:
        pytest.skip(f"{document} has no runnable Python block")
    (tmp_path / "studies").symlink_to(ROOT / "studies")  # blocks name study files by their repository path
    (tmp_path / "blocks.txt").write_text(repr(blocks))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                                                os.environ.get("PYTHONPATH", "")])}
    env.pop("XAIOPT_STORAGE", None)
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.txt"), document], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count(": ok") == len(blocks)
