"""Every ```python block of README.md runs as written (CPU-only machine is enough).

The blocks run in one fresh interpreter (importing torch once keeps this quick), each with a
fresh namespace and its own empty working directory, so no block depends on another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)

_DRIVER = r"""
import json, os, sys, traceback
blocks, results = json.load(open(sys.argv[1])), {}
for line, source in blocks:
    os.chdir(os.path.join(sys.argv[3], str(line)))
    try:
        exec(compile(source, f"README.md:{line}", "exec"), {"__name__": "__main__"})
        results[line] = None
    except BaseException:
        results[line] = traceback.format_exc()
json.dump(results, open(sys.argv[2], "w"))
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of each fenced ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """Line number -> None (ran) or the traceback, for every block."""
    work = tmp_path_factory.mktemp("readme")
    for line, _ in BLOCKS:
        (work / str(line)).mkdir()
    (work / "blocks.json").write_text(json.dumps(BLOCKS))
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(work / "blocks.json"), str(work / "results.json"),
         str(work)], check=False, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return {int(k): v for k, v in json.loads((work / "results.json").read_text()).items()}


def test_the_readme_has_python_blocks():
    assert BLOCKS


def test_block_extraction():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\nc = 3\n```\n"
    assert python_blocks(text) == [(2, "a = 1\n"), (8, "b = 2\nc = 3\n")]


@pytest.mark.parametrize("line, source", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs(line, source, outcomes):
    assert outcomes[line] is None, f"README.md block at line {line}:\n{source}\n{outcomes[line]}"


def _signatures_in_the_api_table(text: str) -> list[tuple[str, str]]:
    """(name, argument text) of every `name(...)` in the first cell of the API table."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    found = []
    for row in rows:
        first_cell = row.split(" | ")[0]
        found += re.findall(r"`([a-z_]+)\((.*?)\)`", first_cell)
    return found


def _split_arguments(args: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in args:
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in parts + [current.strip()] if p]


def test_the_api_table_shows_the_real_signatures():
    """Each function in the README's API table lists every parameter of the real function,
    with the real default."""
    import inspect

    import torch

    import vbkernels

    table = _signatures_in_the_api_table((ROOT / "README.md").read_text(encoding="utf-8"))
    assert {"decode_depth", "encode_depth", "decode_segmentation"} <= {n for n, _ in table}
    for name, args in table:
        real = inspect.signature(getattr(vbkernels, name)).parameters
        shown = {}
        for arg in _split_arguments(args):
            if arg == "*":
                continue
            key, _, default = arg.partition("=")
            shown[key] = eval(default, {"torch": torch}) if default else inspect.Parameter.empty
        assert list(shown) == list(real), f"{name}: README {list(shown)}, real {list(real)}"
        for key, default in shown.items():
            assert default == real[key].default, f"{name}({key}=...): README {default!r}, " \
                                                 f"real {real[key].default!r}"
