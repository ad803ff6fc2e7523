"""The documentation site builds with `mkdocs build --strict`: a broken link, a missing anchor, a page
left out of the nav or a missing included file fails the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("material")

REPO = Path(__file__).resolve().parent.parent


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # not --quiet: it drops the warnings before --strict counts them, and the build "passes"
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "reference" / "flags" / "index.html").is_file()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root)
    (root / "benchmarks").mkdir()
    for name in ("RESULTS.md", "SOAK.md"):
        shutil.copy(REPO / "benchmarks" / name, root / "benchmarks")
    return root


@pytest.mark.parametrize(
    "broken",
    [
        "[a page that is not there](nowhere.md)",
        "[an anchor that is not there](emulator.md#no-such-section)",
    ],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, broken: str) -> None:
    root = _copy(tmp_path)
    with (root / "docs" / "index.md").open("a") as f:
        f.write(f"\n{broken}\n")
    built = _build(root, tmp_path / "site")
    assert built.returncode != 0
    assert "nowhere.md" in built.stderr or "no-such-section" in built.stderr, built.stderr
