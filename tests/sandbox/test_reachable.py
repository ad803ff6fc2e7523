"""Under the sandbox, the paths under the machine's /tmp that a function's settings name stay
reachable at their own paths: its code and what it runs from read-only, the paths its variables
name writable (the user's channel with the function); nothing else of the machine's /tmp.

The rules are checked on `namespace.plan` (pure apart from stat calls), then end to end with a
real rie whose code, bootstrap and record files live in pytest's tmp_path, as users' tests do.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rie.sandbox import namespace
from rie.testing import LambdaFunction, rie_arguments

FN = Path(__file__).resolve().parent / "fixtures" / "fn"

needs_fs = pytest.mark.skipif(
    namespace.capability() is not None,
    reason=f"no private /tmp or read-only code here: {namespace.capability()}",
)


@pytest.fixture
def under_tmp() -> Iterator[Path]:
    """A directory right under the machine's /tmp (pytest's basetemp may be elsewhere)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        yield Path(d)


def test_variables_name_the_nearest_existing_path_never_tmp_itself(under_tmp: Path) -> None:
    (under_tmp / "out").mkdir()
    (under_tmp / "file").write_text("x")
    env = {
        "RECORD": str(under_tmp / "out" / "record.jsonl"),  # not there yet: its directory
        "FILE": str(under_tmp / "file"),  # there: the file itself
        "LIST": f"60:{under_tmp / 'out'}",  # a list: each part
        "DEEP": str(under_tmp / "no" / "such" / "dir"),  # the nearest existing parent
        "NEW": "/tmp/pyrie-test-not-there-at-all",  # right in /tmp, not there: nothing
        "ROOT": "/tmp",
        "OUTSIDE": "/var/log",
        "PATH": f"{under_tmp / 'out'}:/usr/bin",  # a search path: code, not a channel
        "TMPDIR": str(under_tmp),  # rie's own
    }
    found = namespace.channel_paths(env, ("TMPDIR",))
    assert sorted(set(found)) == sorted(
        {str(under_tmp / "out"), str(under_tmp / "file"), str(under_tmp)}
    )
    assert "/tmp" not in found


def test_code_stays_read_only_and_channels_inside_it_are_writable(under_tmp: Path) -> None:
    task = under_tmp / "task"
    (task / "out").mkdir(parents=True)
    (task / "conf.json").write_text("{}")
    bootstrap = under_tmp / "bin" / "bootstrap"
    bootstrap.parent.mkdir()
    bootstrap.write_text("#!/bin/sh\n")
    env = {
        "IN_CODE": str(task / "out"),  # named exactly: writable
        "CONF": str(task / "conf.json"),
        "NEAR": str(task / "new-file"),  # not there: its parent is the code, which stays read-only
    }
    p = namespace.plan(
        "/tmp/rie-elsewhere",
        readonly=[str(task)],
        reachable=namespace.reachable_paths([str(bootstrap)], {}),
        cwd=str(task),
        writable=namespace.channel_paths(env),
    )
    keep = dict(p.keep)
    assert keep[str(task)] is False
    assert keep[str(task / "out")] is True
    assert keep[str(task / "conf.json")] is True
    assert keep[str(bootstrap.parent)] is False
    assert "/tmp" not in keep
    assert str(task) not in p.readonly, "kept read-only under /tmp, not mounted twice"
    # parents first, so a path inside a kept one is mounted over it
    assert [path for path, _ in p.keep] == sorted(keep)


def test_a_path_inside_a_kept_one_of_the_same_kind_needs_nothing(under_tmp: Path) -> None:
    (under_tmp / "a" / "b").mkdir(parents=True)
    p = namespace.plan(
        None,
        readonly=[],
        reachable=[],
        cwd="/",
        writable=[str(under_tmp / "a"), str(under_tmp / "a" / "b")],
    )
    assert p.keep == ((str(under_tmp / "a"), True),)


@needs_fs
def test_a_function_trades_files_through_paths_its_settings_name(tmp_path: Path) -> None:
    # as a user's test does it: the code, a bootstrap-like script and the records all in
    # pytest's tmp_path, the records named by variables (--env, and rie's own environment)
    task = tmp_path / "task"
    task.mkdir()
    (task / "res.py").write_text((FN / "res.py").read_text())
    script = tmp_path / "tools" / "probe.py"
    script.parent.mkdir()
    script.write_text("pass\n")
    records = tmp_path / "records"
    records.mkdir()
    given = tmp_path / "given.txt"
    given.write_text("from the test")
    args = rie_arguments(
        handler="res.handler",
        task_root=task,
        memory=512,
        timeout=30,
        env={"RECORD": str(records / "out.jsonl"), "GIVEN": str(given)},
        sandbox="lambda",
    )
    fn = LambdaFunction(args, environ={"ALSO": f"x:{tmp_path / 'env-dir' / 'later'}"})
    (tmp_path / "env-dir").mkdir()
    fn.start()
    try:
        targets = [
            str(records / "out.jsonl"),  # named (not there yet): made by the function
            str(given),  # named and there: writable
            str(tmp_path / "env-dir" / "later"),  # named through rie's own environment
            str(task / "res.py"),  # the code: read-only
            str(script),  # not named by the settings: not there at all
        ]
        out = fn.invoke({"kind": "fs", "write_to": targets}).payload
        assert isinstance(out, dict)
        assert out["tmpdir"] == "/tmp"
        assert out[targets[0]] == out[targets[1]] == out[targets[2]] == "written"
        assert out[targets[3]] == errno.EROFS
        assert out[targets[4]] == errno.ENOENT
        assert out["code"] == errno.EROFS
    finally:
        fn.stop()
    # written through to the machine's files, at the same paths
    assert (records / "out.jsonl").read_text() == "x"
    assert given.read_text() == "x"
    assert (tmp_path / "env-dir" / "later").read_text() == "x"
    assert not (task / "written").exists()


@needs_fs
def test_the_command_and_its_script_under_tmp_are_reachable_read_only(tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "res.py").write_text((FN / "res.py").read_text())
    runner = tmp_path / "runner"
    runner.mkdir()
    # a script the command names: Python puts its directory on sys.path, so a sibling imports
    (runner / "start.py").write_text(
        "import sys, sibling\nfrom runtime.loop import main\nsys.exit(main(sys.argv))\n"
    )
    (runner / "sibling.py").write_text("")
    args = rie_arguments(
        handler="res.handler",
        task_root=task,
        memory=512,
        timeout=30,
        command=(sys.executable, str(runner / "start.py")),
        sandbox="lambda",
    )
    fn = LambdaFunction(args).start()
    try:
        target = str(runner / "new")
        out = fn.invoke({"kind": "fs", "write_to": [target]}).payload
        assert isinstance(out, dict)
        assert out.get(target) == errno.EROFS, out
    finally:
        fn.stop()
    assert not os.path.exists(runner / "new")


EXTENSION = """
import json, os, sys, urllib.request
api = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"
with open(os.path.join(os.environ["SEEN_DIR"], "ext"), "w") as f:
    f.write(sys.argv[0])
req = urllib.request.Request(f"{api}/register", data=b'{"events": ["SHUTDOWN"]}',
                             headers={"Lambda-Extension-Name": "probe"}, method="POST")
with urllib.request.urlopen(req) as reply:
    ext_id = reply.headers["Lambda-Extension-Identifier"]
req = urllib.request.Request(f"{api}/event/next", headers={"Lambda-Extension-Identifier": ext_id})
urllib.request.urlopen(req).read()
"""

HANDLER = """
import os, subprocess, sys

def handler(event, context):
    sys.path.insert(0, "/opt/python")  # as Lambda's Python runtimes have it
    import laymod, only_first
    try:
        open("/opt/written", "w")
        write = "written"
    except OSError as exc:
        write = exc.errno
    tool = subprocess.run(["/opt/bin/tool"], capture_output=True, text=True).stdout
    return {"who": laymod.WHO, "file": laymod.__file__, "first": only_first.ONE,
            "tool": tool, "write": write, "opt": sorted(os.listdir("/opt"))}
"""


@needs_fs
@pytest.mark.skipif(not os.path.isdir("/opt"), reason="this machine has no /opt to mount on")
def test_layers_are_merged_read_only_at_opt_and_their_extensions_run_from_there(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "layer1", tmp_path / "layer2"
    for layer, who in ((first, "first"), (second, "second")):
        (layer / "python").mkdir(parents=True)
        (layer / "python" / "laymod.py").write_text(f"WHO = {who!r}\n")
    (first / "python" / "only_first.py").write_text("ONE = 1\n")
    (first / "bin").mkdir()
    (first / "bin" / "tool").write_text("#!/bin/sh\necho tool of the first layer\n")
    (first / "bin" / "tool").chmod(0o755)
    (second / "extensions").mkdir()
    (second / "extensions" / "probe").write_text(f"#!{sys.executable}\n{EXTENSION}")
    (second / "extensions" / "probe").chmod(0o755)
    task = tmp_path / "task"
    task.mkdir()
    (task / "app.py").write_text(HANDLER)
    seen = tmp_path / "seen"
    seen.mkdir()
    machine_opt = set(os.listdir("/opt"))
    args = rie_arguments(
        handler="app.handler",
        task_root=task,
        memory=512,
        timeout=30,
        env={"SEEN_DIR": str(seen)},
        sandbox="lambda",
        args=["--layer", str(first), "--layer", str(second)],
    )
    fn = LambdaFunction(args).start()
    try:
        out = fn.invoke({}).payload
    finally:
        fn.stop()
    assert isinstance(out, dict), out
    assert (out["who"], out["file"]) == ("second", "/opt/python/laymod.py"), "the later wins"
    assert out["first"] == 1 and out["tool"] == "tool of the first layer\n"
    assert out["write"] == errno.EROFS
    assert machine_opt <= set(out["opt"]), "what the machine keeps in /opt is still there"
    assert {"python", "bin", "extensions"} <= set(out["opt"])
    assert (seen / "ext").read_text() == "/opt/extensions/probe"
    assert not os.path.exists("/opt/written")
