"""Files the loaders cannot use (issue 16, item 10): zips that cannot be unpacked (as --zip and as
--layer, one mechanism), a TOML file that is not UTF-8, templates that loop, have the wrong shape
or expand without end. Each is one line naming the file, exit 2, in bounded time and memory, and
nothing is left behind in the temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import hostile_files
from tests.helpers import REPO

PY = sys.executable
MAX_RSS_MB = 200


def run_rie(args: list[str], tmpdir: Path, timeout: float = 60) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in MB) of a rie that must refuse to start."""
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    env.pop("AWS_LAMBDA_RUNTIME_API", None)
    cmd = [PY, "-m", "rie", "--runtime-interface-emulator-address", "127.0.0.1:0",
           "--runtime-api-address", "127.0.0.1:0", *args]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    deadline = time.monotonic() + timeout
    while True:
        # reaped here, for its own rusage: the peak memory of this rie
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"rie neither refused nor started within {timeout} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(10)
    return proc.returncode, b"".join(err).decode("utf-8", "replace"), usage.ru_maxrss // 1024


def check_refused(args: list[str], path: Path, tmp_path: Path) -> str:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    code, err, rss_mb = run_rie(args, tmpdir)
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert str(path) in lines[0], lines[0]
    assert list(tmpdir.iterdir()) == [], "left behind: " + str(list(tmpdir.iterdir()))
    assert rss_mb < MAX_RSS_MB, rss_mb
    return lines[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", list(hostile_files.ZIPS))
def test_a_zip_that_cannot_be_unpacked_is_one_line(kind: str, tmp_path: Path) -> None:
    make: Callable[[Path], Path] = hostile_files.ZIPS[kind]
    path = make(tmp_path)
    line = check_refused(["--zip", str(path), "--handler", "app.handler"], path, tmp_path)
    assert line.startswith("rie: --zip: "), line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["bad CRC", "encrypted entry", "NUL in a symlink target"])
def test_a_layer_zip_is_unpacked_the_same_way(kind: str, tmp_path: Path) -> None:
    path = hostile_files.ZIPS[kind](tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(hostile_files.HANDLER)
    args = ["--layer", str(path), "--task-root", str(code), "--handler", "app.handler"]
    line = check_refused(args, path, tmp_path)
    assert "--layer: " in line, line


@pytest.mark.timeout(120)
def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = hostile_files.toml_not_utf8(tmp_path)
    line = check_refused(["--config", str(path)], path, tmp_path)
    assert "UTF-8" in line, line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", list(hostile_files.TEMPLATES))
def test_a_template_that_cannot_be_read_is_one_line(kind: str, tmp_path: Path) -> None:
    path = hostile_files.TEMPLATES[kind](tmp_path)
    check_refused(["--template", str(path)], path, tmp_path)
