"""The repository stands on its own: no file points outside it, and every relative
Markdown link in the README and docs/ resolves to a file of the repository."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
# Built from pieces so that this file does not contain what it looks for.
FORBIDDEN = ("..", "/shared"), ("shared/", "SPEC"), ("SPEC", " §")
# Folders that hold build outputs, caches or environments, never sources of the repository.
_NOT_SOURCE = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
               ".hypothesis", ".benchmarks", ".venv", "venv", "node_modules", "shared"}
# [text](target) and [text](target "title"); images (![...](...)) use the same syntax.
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _walk_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if path.is_file() and not any(p in _NOT_SOURCE or p.endswith(".egg-info") for p in parts):
            found.append(path)
    return found


def repository_files() -> list[Path]:
    """The files git tracks here plus new files it does not ignore, or every source file
    under the root when git cannot say (no git binary, or a copy of the tree without .git)."""
    if shutil.which("git") is not None:
        done = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], cwd=ROOT, capture_output=True, timeout=60)
        if done.returncode == 0 and done.stdout:
            names = done.stdout.decode("utf-8", "surrogateescape").split("\0")
            return [ROOT / name for name in names if name and (ROOT / name).is_file()]
    return _walk_files()


def test_repository_files_are_listed():
    files = {p.relative_to(ROOT).as_posix() for p in repository_files()}
    assert {"README.md", "docs/format.md", "pyproject.toml", "tests/test_repository.py"} <= files


def test_without_git_the_tree_is_walked(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    files = {p.relative_to(ROOT).as_posix() for p in repository_files()}
    assert {"README.md", "docs/format.md", "tests/test_repository.py"} <= files
    assert not any(name.startswith(".git/") or "__pycache__" in name for name in files)


def outside_references(paths: list[Path]) -> list[str]:
    """``file:line: needle`` for every line of a text file that names a forbidden path."""
    needles = ["".join(parts) for parts in FORBIDDEN]
    found = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (images, compiled libraries) hold no references
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{path}:{number}: {needle!r}" for needle in needles if needle in line]
    return found


def test_outside_references_are_found(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("fine\nsee " + "".join(FORBIDDEN[1]) + ".md\n")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe" + "".join(FORBIDDEN[0]).encode())
    assert outside_references([bad, tmp_path / "blob.bin"]) == [
        f"{bad}:2: {''.join(FORBIDDEN[1])!r}"]


def test_no_file_points_outside_the_repository():
    offenders = outside_references(repository_files())
    assert not offenders, "files that point outside the repository:\n" + "\n".join(offenders)


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def _local_targets(text: str) -> list[str]:
    """Relative link targets of a Markdown text, without their #anchors; code spans and
    fenced blocks are left out, since brackets there are code, not links."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, mailto: and anchors within the page
        targets.append(unquote(target.split("#", 1)[0]))
    return targets


def test_link_finder_sees_relative_links_only():
    text = ('See [the format](docs/format.md#depth), [web](https://example.org), '
            '[top](#api), ![chart](bench/results/x.png "chart") and `[not](a-link)`.')
    assert _local_targets(text) == ["docs/format.md", "bench/results/x.png"]


def test_markdown_links_resolve_inside_the_repository():
    files = {p.resolve() for p in repository_files()}
    broken = []
    for page in _markdown_files():
        assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
        for target in _local_targets(page.read_text(encoding="utf-8")):
            resolved = (page.parent / target).resolve()
            inside = resolved.is_relative_to(ROOT)
            if not inside or not (resolved in files or (resolved.is_dir() and inside)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links that do not resolve to a file of the repository:\n" + "\n".join(
        broken)


# ------------------------------------------------ docs/format.md agrees with the code


def _format_section(title: str) -> str:
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    """Cells of the Markdown table rows whose first cell matches the regex ``first_cell``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first_cell, cells[0]):
            rows.append(cells)
    return rows


def _number(cell: str) -> float:
    return float("inf") if cell == "+inf" else float(cell)


def test_format_worked_examples_match_the_code():
    import torch

    import vbkernels as vb

    rows = _table_rows(_format_section("Depth"), r"\(\d+, \d+, \d+\)")
    assert len(rows) >= 10
    rgb = torch.tensor([ast.literal_eval(r[0]) for r in rows], dtype=torch.uint8).view(1, -1, 3)
    t = vb.hilbert_project(rgb, backend="torch")[0].double()
    depth, dist = vb.decode_depth(rgb, return_distance=True, backend="torch")
    for i, (colour, _, t_doc, depth_doc, dist_doc) in enumerate(rows):
        assert abs(t[i].item() - _number(t_doc)) <= 1e-6, colour
        want = _number(depth_doc)
        got = depth[0, i].item()
        assert got == want if want in (0.0, float("inf")) else abs(got / want - 1) <= 1e-5, colour
        assert abs(dist[0, i].item() - _number(dist_doc)) <= 1e-3, colour


def test_format_precision_table_matches_the_precision_command():
    from vbkernels.cli.precision import precision_table

    rows = _table_rows(_format_section("Depth"), r"[\d.]+ m")
    assert len(rows) >= 8
    units = {"mm": 1e-3, "cm": 1e-2, "m": 1.0}
    computed = {row["depth"]: row["step"] for row in precision_table(-3.0, 10 / 3)}
    for depth_cell, step_cell, _ in rows:
        value, unit = step_cell.split()
        step = computed[float(depth_cell.split()[0])]
        assert abs(step / (float(value) * units[unit]) - 1) < 5e-3, depth_cell
