"""The HTTP front's per-function settings: from a SAM template's events and FunctionUrlConfig, from a
TOML config's keys, and the command line's flags winning over both."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rie.settings.errors import ConfigError
from rie.settings.load import load_all
from rie.settings.sam import front_of

pytest.importorskip("yaml")


def _api(kind: str, **props: object) -> dict[str, object]:
    return {"Type": kind, "Properties": {"Path": "/x", "Method": "get", **props}}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ({"A": _api("Api")}, "rest-api"),
        ({"A": _api("HttpApi")}, "http-api"),
        ({"A": {"Type": "HttpApi"}}, "http-api"),  # the catch-all route
        ({"A": _api("HttpApi", PayloadFormatVersion="1.0")}, "rest-api"),
        ({"A": _api("HttpApi", PayloadFormatVersion=2.0)}, "http-api"),
        ({"Q": {"Type": "SQS", "Properties": {}}}, None),
    ],
)
def test_api_events_choose_the_format(events: dict[str, object], expected: str | None) -> None:
    warnings: list[str] = []
    assert front_of({"Events": events}, "t: Fn", warnings).get("http_format") == expected
    assert warnings == []


def test_function_url_config_and_conflicts() -> None:
    warnings: list[str] = []
    url = {
        "AuthType": "NONE",
        "InvokeMode": "RESPONSE_STREAM",
        "Cors": {
            "AllowOrigins": ["https://a.example"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type"],
            "ExposeHeaders": ["x-id"],
            "MaxAge": "300",
            "AllowCredentials": True,
        },
    }
    assert front_of({"FunctionUrlConfig": url}, "t: Fn", warnings) == {
        "http_format": "function-url",
        "http_invoke_mode": "RESPONSE_STREAM",
        "cors_allow_origins": ["https://a.example"],
        "cors_allow_methods": ["GET", "POST"],
        "cors_allow_headers": ["content-type"],
        "cors_expose_headers": ["x-id"],
        "cors_max_age": 300,
        "cors_allow_credentials": True,
    }
    both = {"Events": {"A": _api("HttpApi"), "B": _api("Api")}, "FunctionUrlConfig": url}
    assert front_of(both, "t: Fn", warnings) == {"http_format": "http-api"}
    assert len(warnings) == 2
    assert "both Api (payload 1.0) and HttpApi (2.0)" in warnings[0]
    assert "FunctionUrlConfig is ignored" in warnings[1]


def _config(tmp_path: Path, body: str) -> str:
    (tmp_path / "code").mkdir(exist_ok=True)
    path = tmp_path / "rie.toml"
    head = '[defaults]\nhandler = "app.handler"\ntask_root = "code"\n'
    path.write_text(head + textwrap.dedent(body))
    return str(path)


def test_config_keys_and_flags_over_them(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """
        [functions.a]
        http_format = "rest-api"
        http_integration_timeout = 2
        [functions.b]
        http_invoke_mode = "response_stream"
        cors_allow_origins = ["*"]
        cors_allow_methods = ["get"]
        cors_max_age = 10
        cors_allow_credentials = true
        """,
    )
    a, b = load_all(["--config", path, "--http", "0"], {})
    assert (a.http_format, a.http_integration_timeout_s) == ("rest-api", 2.0)
    assert (b.http_format, b.http_invoke_mode) == ("function-url", "RESPONSE_STREAM")
    assert b.cors_allow_origins == ("*",) and b.cors_allow_methods == ("GET",)
    assert b.cors_max_age == 10 and b.cors_allow_credentials is True
    # flags given on the command line win over every function's own settings
    flags = ["--http-format", "http-api", "--cors-allow-origin", "https://x.example"]
    a, b = load_all(["--config", path, "--http", "0", *flags], {})
    assert a.http_format == b.http_format == "http-api"
    assert b.cors_allow_origins == ("https://x.example",) and b.cors_max_age == 0
    assert a.http_integration_timeout_s == 2.0  # not given on the command line: the file's


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[functions.a]\nhttp_format = "alb"\n', "http_format must be one of"),
        ('[functions.a]\nhttp_invoke_mode = "STREAM"\n', "http_invoke_mode must be one of"),
        ("[functions.a]\ncors_max_age = 90000\n", "cors_max_age must be 0-86400"),
        ('[functions.a]\ncors_allow_origins = "*"\n', "cors_allow_origins must be a list"),
        ("[functions.a]\ncors_allow_origins = [1]\n", "list of non-empty strings"),
        ('[functions.a]\ncors_allow_credentials = "yes"\n', "must be true or false"),
        ("[functions.a]\nhttp_integration_timeout = 0\n", "http_integration_timeout must be"),
    ],
)
def test_bad_front_keys_are_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_all(["--config", _config(tmp_path, body)], {})
    assert "function a" in str(info.value) or "[functions.a]" in str(info.value)


def test_cors_beside_an_api_format_is_warned_of(tmp_path: Path) -> None:
    path = _config(
        tmp_path, '[functions.a]\nhttp_format = "http-api"\ncors_allow_origins = ["*"]\n'
    )
    [a] = load_all(["--config", path, "--http", "0"], {})
    assert any("cors_* and http_invoke_mode apply to function-url only" in w for w in a.warnings)


def test_timeout_in_millis_is_the_integration_timeout() -> None:
    events = {"A": _api("Api", TimeoutInMillis=2500), "B": _api("Api", TimeoutInMillis="900")}
    assert front_of({"Events": events}, "t: Fn", []) == {
        "http_format": "rest-api",
        "http_integration_timeout": 2.5,
    }


def test_a_route_on_the_command_line_is_refused_beside_a_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "[functions.a]\n")
    with pytest.raises(ConfigError, match="--route with --config/--template: give it per function"):
        load_all(["--config", path, "--http", "0", "--route", "GET /x"], {})
