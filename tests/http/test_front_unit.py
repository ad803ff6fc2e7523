"""The front's configuration and its routing between targets (functions), without processes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from rie.fronts.http_front import HttpFront
from rie.model.invocation import Invocation
from rie.observe.metrics import Metrics
from rie.settings.config import Address, Config, load
from rie.settings.errors import ConfigError


def test_http_flags() -> None:
    c = load(["--handler", "app.handler", "--http", "8000"], {})
    assert c.http_address == Address("127.0.0.1", 8000)  # loopback unless a host is named
    assert (c.http_format, c.http_invoke_mode, c.routes) == ("function-url", "BUFFERED", ())
    assert load(["--handler", "a.b", "--http", ":0"], {}).http_address == Address("127.0.0.1", 0)
    assert load(["--handler", "a.b", "--http", "0.0.0.0:9"], {}).http_address == Address(
        "0.0.0.0", 9
    )
    c = load(
        ["--handler", "a.b", "--http", "0", "--route", "GET /a/{b}", "--cors-allow-origin", "*",
         "--cors-allow-methods", "get, post", "--cors-max-age", "60", "--cors-allow-credentials"],
        {},
    )  # fmt: skip
    assert c.routes == ("GET /a/{b}",) and c.cors_allow_origins == ("*",)
    assert c.cors_allow_methods == ("GET", "POST") and c.cors_max_age == 60
    assert c.cors_allow_credentials is True
    assert load(["--handler", "a.b"], {}).http_address is None


@pytest.mark.parametrize(
    "flags",
    [
        ["--route", "GET nope"],
        ["--route", "GET /a/{b+}/c"],
        ["--cors-max-age", "90000"],
        ["--http", "host:notaport"],
        ["--http-integration-timeout", "0"],
    ],
)
def test_bad_http_flags(flags: list[str]) -> None:
    with pytest.raises(ConfigError):
        load(["--handler", "a.b", "--http", "0", *flags], {})


class _Pool:
    async def invoke(self, inv: Invocation, wait_s: float) -> None:
        raise AssertionError("not invoked in these tests")


@dataclass
class _Target:
    config: Config
    pool: _Pool
    metrics: Metrics = field(default_factory=lambda: Metrics(128))


def _target(name: str, *routes: str) -> _Target:
    base = Config(command=("/bin/true",), handler="a.b", function_name=name)
    return _Target(replace(base, routes=routes, http_format="http-api"), _Pool())


def test_routing_between_targets() -> None:
    items = _target("items", "GET /items/{id}", "POST /items")
    files = _target("files", "ANY /files/{path+}")
    front = HttpFront([items, files], Metrics(128))
    found = front._route("GET", "/items/7")
    assert found is not None and found[0].target is items and found[2] == {"id": "7"}
    found = front._route("PUT", "/files/a/b")
    assert found is not None and found[0].target is files and found[2] == {"path": "a/b"}
    assert front._route("GET", "/other") is None
    # no routes anywhere: one target takes everything, several cannot be told apart
    assert HttpFront([_target("one")], Metrics(128))._route("GET", "/x") is not None
    assert HttpFront([_target("a"), _target("b")], Metrics(128))._route("GET", "/x") is None


def test_flags_without_effect_are_warned_of() -> None:
    assert load(["--handler", "a.b", "--route", "GET /x"], {}).warnings
    rest_cors = ["--http", "0", "--http-format", "rest-api", "--cors-allow-origin", "*"]
    assert load(["--handler", "a.b", *rest_cors], {}).warnings
    assert not load(["--handler", "a.b", "--http", "0"], {}).warnings


def test_lambda_url_paths_reach_each_of_several_functions() -> None:
    items = _target("items", "GET /items/{id}")
    other = _target("other")
    front = HttpFront([items, other], Metrics(128))
    found = front._route("POST", "/lambda-url/other/a/b%20c")
    assert found is not None and found[0].target is other and found[3] == "/a/b%20c"
    found = front._route("GET", "/lambda-url/items")
    assert found is not None and found[0].target is items and found[1] is None
    assert found[3] == "/"
    assert front._route("GET", "/lambda-url/nobody/x") is None
    assert front._route("GET", "/items/1") is not None
    # one function takes every path as it is, /lambda-url/ included
    alone = HttpFront([_target("only")], Metrics(128))
    found = alone._route("GET", "/lambda-url/only/x")
    assert found is not None and found[3] == "/lambda-url/only/x"
    assert [line.split(":")[0] for line in front.describe()] == [
        "items (http-api)",
        "other (http-api)",
    ]


def test_a_route_given_twice_is_served_by_the_first_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = _target("first", "GET /same"), _target("second", "GET /same")
    with caplog.at_level("WARNING", logger="rie"):
        front = HttpFront([first, second], Metrics(128))
    assert "route GET /same is given by first and second: first serves it" in caplog.text
    found = front._route("GET", "/same")
    assert found is not None and found[0].target is first


def test_the_front_does_not_import_aiohttp() -> None:
    """The front is on the HTTP core: `--http` alone loads no aiohttp (only `--dashboard` does)."""
    import subprocess
    import sys

    code = (
        "import sys, rie.app, rie.fronts.http_front; "
        "sys.exit('aiohttp' in sys.modules and 'aiohttp imported')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
