"""A seeded fuzz of the settings loaders: random and mutated TOML configs, SAM templates and zips
(as --zip and as --layer) go through `load_all` exactly as the command line would hand them over.
Each one loads or is refused with a ConfigError (whose message is one line): never another
exception, each within a bounded time, and memory stays bounded over the run.

PYRIE_FUZZ_SEED picks the seed (printed on failure); the run is bounded to a few seconds a loader.
"""

from __future__ import annotations

import io
import os
import random
import resource
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from rie.settings.errors import ConfigError
from rie.settings.layers import LayerError, Layers
from rie.settings.load import load_all
from tests import hostile_files

# the random zips repeat names on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

SEED = int(os.environ.get("PYRIE_FUZZ_SEED", "20261207"))
SECONDS = float(os.environ.get("PYRIE_FUZZ_SECONDS", "3"))
CASE_LIMIT_S = 10.0  # one input, at most (a guard: they take milliseconds)
GROWTH_LIMIT_MB = 150

VALID_TOML = """\
[defaults]
handler = "app.handler"
timeout = 3
env = { GREETING = "hi", N = 3 }

[functions.alpha]
routes = ["GET /alpha/{id}", "ANY /alpha/{rest+}"]
memory = 256
max_concurrency = 2
queue_timeout = 0.5

[functions.beta]
http_format = "rest-api"
routes = ["POST /beta"]
env = { FLAG = true }
cors_allow_origins = ["*"]
"""

VALID_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
Conditions:
  IsDev: !Equals [!Ref Stage, dev]
Mappings:
  M:
    dev: {size: 256}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables:
        STAGE: !Ref Stage
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Condition: IsDev
    Properties:
      Handler: app.handler
      Runtime: python3.12
      CodeUri: .
      MemorySize: !FindInMap [M, !Ref Stage, size]
      Description: !Sub '${Stage}-${AWS::Region}'
      Environment:
        Variables:
          JOINED: !Join ['-', [a, !Ref Stage, !If [IsDev, x, y]]]
      Events:
        Get:
          Type: HttpApi
          Properties: {Path: '/items/{id}', Method: get}
"""

TOML_PIECES = [
    "nan", "inf", "-inf", "1e999", "-1", "0", "9223372036854775807", "-0.0", '"\\u0000"',
    '"A=B"', '""', "[]", "{}", "[[[[[[[[]]]]]]]]", "true", '"x" = "y"', "[functions.x]",
    "[defaults]", '"GET /{a}/{a}"', '"FOO /x"', '"$default"', "1979-05-27T07:32:00Z",
    "env = {", "routes = [", "max_concurrency = 5000000", "timeout = nan", '"\\ud800"',
    "[[functions]]", "handler", "= =", "\n", '"' + "x" * 300 + '"',
]  # fmt: skip
YAML_PIECES = [
    "!Ref", "!Condition", "!Join", "!If", "!Sub", "!GetAtt", "!Select", "!FindInMap", "!Not",
    "!Equals", "!Split", "!Base64", "!Nope", "&a", "*a", "[]", "{}", "- ", ": ", "\n  ", "\t",
    ".nan", ".inf", "-.inf", "~", "null", "'\\0'", '"\\0"', "2", "[1, 2", "{a: *a}", "<<: *a",
    "AWS::NoValue", "Properties", "Resources", "Conditions", "Type: AWS::Serverless::Function",
    '"A=B"', "? ", "---", "...", "%YAML 1.1", "!!python/object:os.system", "\x00", "\xff",
]  # fmt: skip
ZIP_NAMES = [
    "app.py", "bootstrap", "lib/", "lib", "lib/m.py", "../up.py", "/abs.py", "a/../../b",
    "d/" * 1200 + "f", "x" * 300, "sp ace.py", "ünï.py", "link", "a/./b", "", "./", "lib/..",
]  # fmt: skip


def _mutate(data: bytes, rng: random.Random, pieces: list[str]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        at = rng.randrange(len(out) + 1)
        if op < 0.35 and pieces:
            out[at:at] = rng.choice(pieces).encode("utf-8", "surrogatepass")
        elif op < 0.55 and out:
            out[at : at + rng.randint(1, 20)] = b""
        elif op < 0.75 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif op < 0.9 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 200)]  # a repeated slice
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def _random_zip(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    method = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("app.py", hostile_files.HANDLER)
        for _ in range(rng.randint(0, 5)):
            name = rng.choice(ZIP_NAMES) or "empty"
            info = zipfile.ZipInfo(name)
            kind = rng.random()
            if kind < 0.2:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                data = rng.choice([b"app.py", b"../..", b"/etc", b"a\x00b", b".", b"link"])
            else:
                info.external_attr = rng.choice([0o755, 0o644, 0, 0o7777]) << 16
                data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
            info.compress_type = method
            z.writestr(info, data)
    data = buf.getvalue()
    return _mutate(data, rng, []) if rng.random() < 0.6 else data


def _load(args: list[str]) -> None:
    started = time.monotonic()
    try:
        load_all(args, {})
    except ConfigError as exc:
        assert "\n" not in str(exc).strip(), repr(str(exc))
    assert time.monotonic() - started < CASE_LIMIT_S, args


def _fuzz(tmp_path: Path, make: Callable[[random.Random, Path], list[str]]) -> int:
    rng = random.Random(SEED)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    deadline = time.monotonic() + SECONDS
    cases = 0
    while time.monotonic() < deadline:
        case = tmp_path / f"case{cases}"
        case.mkdir()
        (case / "app.py").write_text(hostile_files.HANDLER)
        args = make(rng, case)
        try:
            _load(args)
        except BaseException:
            print(f"PYRIE_FUZZ_SEED={SEED}: case {cases} failed: {args}")
            raise
        cases += 1
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - rss_before
    assert growth < GROWTH_LIMIT_MB, f"PYRIE_FUZZ_SEED={SEED}: memory grew {growth} MB"
    return cases


@pytest.fixture(autouse=True)
def _own_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what --zip unpacks stays until exit: here, under the test's own directory
    tmp = tmp_path / "unpacked"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))


@pytest.mark.timeout(120)
def test_toml_configs(tmp_path: Path) -> None:
    def make(rng: random.Random, case: Path) -> list[str]:
        path = case / "rie.toml"
        path.write_bytes(_mutate(VALID_TOML.encode(), rng, TOML_PIECES))
        return ["--config", str(path)]

    assert _fuzz(tmp_path, make) > 10


@pytest.mark.timeout(120)
def test_sam_templates(tmp_path: Path) -> None:
    pytest.importorskip("yaml")

    def make(rng: random.Random, case: Path) -> list[str]:
        path = case / "template.yaml"
        path.write_bytes(_mutate(VALID_TEMPLATE.encode(), rng, YAML_PIECES))
        return ["--template", str(path)]

    assert _fuzz(tmp_path, make) > 10


@pytest.mark.timeout(120)
def test_zips(tmp_path: Path) -> None:
    def make(rng: random.Random, case: Path) -> list[str]:
        path = case / "code.zip"
        path.write_bytes(_random_zip(rng))
        return ["--zip", str(path), "--handler", "app.handler"]

    assert _fuzz(tmp_path, make) > 10


@pytest.mark.timeout(120)
def test_layer_zips(tmp_path: Path) -> None:
    """Layers are unpacked when the emulator starts (not by load_all): the same refusals."""
    rng = random.Random(SEED)
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        path = tmp_path / "layer.zip"
        path.write_bytes(_random_zip(rng))
        try:
            Layers.prepare([str(path)]).cleanup()
        except LayerError as exc:
            assert "\n" not in str(exc).strip()
    assert not any((tmp_path / "unpacked").iterdir()), "a layer's directory was left behind"
