"""Deployment packages: a .zip runs as uploaded; Lambda's size limits and unsafe entries refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from rie.settings.errors import ConfigError
from rie.settings.package import UNZIPPED_LIMIT, ZIPPED_LIMIT, unpack
from tests.helpers import REPO, rie

HANDLER = """
import os, helper
def handler(event, context):
    return {"root": os.environ["LAMBDA_TASK_ROOT"], "helper": helper.VALUE,
            "files": sorted(os.listdir("."))}
"""


def package(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("app.py", HANDLER)
        z.writestr("lib/helper.py", "VALUE = 'from the zip'\n")
        info = zipfile.ZipInfo("bin/tool.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, "#!/bin/sh\necho tool\n")
    return path


def test_a_package_runs_as_uploaded_and_is_removed_at_exit(tmp_path: Path) -> None:
    pkg = package(tmp_path / "function.zip")
    # where rie unpacks the package on the machine, which the function sees as its task root only
    # without the sandbox (under it, the code is at /var/task: tests/sandbox)
    off = ("--sandbox", "off")
    # without the sandbox the unpacked code is writable: no bytecode written beside it, whatever
    # the environment the suite runs in, so the listing is the package's
    env = {"PYTHONPATH": "lib", "PYTHONDONTWRITEBYTECODE": "1"}
    with rie(*off, "--zip", str(pkg), "--handler", "app.handler", env=env) as r:
        reply = r.invoke({})
        assert reply.status == 200, reply.body
        body = reply.json()
        assert isinstance(body, dict)
        root = Path(body["root"])
        assert body == {
            "root": str(root),
            "helper": "from the zip",
            "files": ["app.py", "bin", "lib"],
        }
        assert root.name.startswith("rie-zip-") and root.is_dir()
        assert os.access(root / "bin" / "tool.sh", os.X_OK)  # permissions as packed
    assert not root.exists()


def run_rie(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rie", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_a_package_over_50_mb_zipped_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    with big.open("wb") as f:
        f.truncate(ZIPPED_LIMIT + 1)  # sparse: the size is checked before anything is read
    done = run_rie("--zip", str(big), "--handler", "app.handler")
    assert done.returncode == 2
    assert "over Lambda's limit of 50.0 MB for a zipped deployment package" in done.stderr


def test_a_package_over_250_mb_unzipped_is_refused_before_extracting(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    zeros = bytes(1 << 20)
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z,
        z.open("zeros", "w", force_zip64=True) as f,
    ):
        for _ in range(UNZIPPED_LIMIT // len(zeros) + 1):
            f.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    done = run_rie("--zip", str(bomb), "--handler", "app.handler")
    assert done.returncode == 2
    assert "unzips to 251.0 MB, over Lambda's limit of 250.0 MB" in done.stderr


@pytest.mark.parametrize("name", ["../escape.py", "/tmp/absolute.py", "a/../../escape.py"])
def test_entries_outside_the_task_root_are_refused(tmp_path: Path, name: str) -> None:
    pkg = tmp_path / "evil.zip"
    with zipfile.ZipFile(pkg, "w") as z:
        z.writestr("app.py", "")
        z.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(ConfigError, match="outside the task root"):
        unpack(str(pkg))
    assert not (tmp_path / "escape.py").exists()


def test_symlinks_stay_inside(tmp_path: Path) -> None:
    def with_link(target: str) -> Path:
        pkg = tmp_path / "links.zip"
        with zipfile.ZipFile(pkg, "w") as z:
            z.writestr("data/real.txt", "real")
            info = zipfile.ZipInfo("data/link.txt")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
        return pkg

    root = Path(unpack(str(with_link("real.txt"))))
    # inside as written, outside once the first link is followed: refused
    pkg = tmp_path / "chain.zip"
    with zipfile.ZipFile(pkg, "w") as z:
        for name, target in (("here", "."), ("up", "here/..")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
        z.writestr("up/escaped.txt", "x")
    with pytest.raises(ConfigError, match="'up' would be written outside"):
        unpack(str(pkg))
    assert not (Path(tempfile.gettempdir()) / "escaped.txt").exists()
    assert (root / "data" / "link.txt").read_text() == "real"
    for outside in ("../../etc/passwd", "/etc/passwd"):
        with pytest.raises(ConfigError, match="outside the task root"):
            unpack(str(with_link(outside)))


def test_declared_sizes_are_checked_before_writing(tmp_path: Path) -> None:
    pkg = tmp_path / "p.zip"
    with zipfile.ZipFile(pkg, "w") as z:
        z.writestr("a.bin", bytes(5000))
    before = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("rie-zip-*"))
    with pytest.raises(ConfigError, match="unzips to"):
        unpack(str(pkg), unzipped_limit=4096)
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("rie-zip-*")) == before
