"""Pure checks of what a caller sends the Invoke API: the payload being JSON (with Lambda's message
and its `{}` for an empty payload), the AWS error chosen for a status, and the time-limit flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rie.api.invoke import event_payload, json_error
from rie.model.errors import InvalidRequestContent, invoke_api_error
from rie.settings.config import load
from rie.settings.errors import ConfigError

PREFIX = "Could not parse request body into json: Could not parse payload into json: "


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"a": [1, 2.5, null, true]}', b'"text"', b"0", b"-1.5e3", b"null", b"[]", b" [ ] "],
)
def test_any_json_value_is_passed_on_untouched(body: bytes) -> None:
    assert event_payload(body) is body


def test_json_that_orjson_declines_is_still_json() -> None:
    # beyond a double's range, and a lone surrogate escape: valid JSON text, read by the stdlib
    for body in (b"1e400", b'"\\ud800"', b'{"n": 123456789012345678901234567890}'):
        assert event_payload(body) is body
        assert json_error(body) is None


def test_an_empty_payload_becomes_an_empty_object() -> None:
    assert event_payload(b"") == b"{}"


def test_a_bare_word_is_reported_as_lambda_does() -> None:
    with pytest.raises(InvalidRequestContent) as info:
        event_payload(b"hello")
    assert info.value.message == (
        PREFIX + "Unrecognized token 'hello': was expecting (JSON String, Number, Array, Object "
        "or token 'null', 'true' or 'false')\n at [Source: (byte[])\"hello\"; line: 1, column: 1]"
    )
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("body", "what", "where"),
    [
        (b'{"a": 1,}', "Expecting property name", "line: 1, column: 9"),
        (b'{\n "a": 1\n "b": 2}', "Expecting ',' delimiter", "line: 3, column: 2"),
        (b"{} x", "Extra data", "line: 1, column: 4"),
        (b"NaN", "Non-standard token 'NaN'", "line: 1, column: 1"),
        (b'{"a": "\xe9"}', "Invalid UTF-8 start byte 0xe9", "line: 1, column: 8"),
        (b"[" * 100000, "Maximum nesting depth exceeded", "line: 1, column: 1"),
    ],
)
def test_parser_details_say_what_and_where(body: bytes, what: str, where: str) -> None:
    detail = json_error(body)
    assert detail is not None
    assert detail.startswith(what), detail
    assert detail.endswith(f"; {where}]"), detail


def test_the_quoted_source_is_cut_at_500_characters() -> None:
    detail = json_error(b"[" + b"1," * 400 + b"oops]")
    assert detail is not None
    assert '"[truncated 306 chars]; line: 1' in detail
    assert detail.count("1,") == 250


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidRequestContentException"),
        (404, "UnknownOperationException"),
        (405, "MethodNotAllowedException"),
        (408, "RequestTimeoutException"),
        (413, "RequestEntityTooLargeException"),
        (417, "InvalidRequestContentException"),
        (500, "ServiceException"),
        (504, "ServiceException"),
    ],
)
def test_statuses_below_the_handlers_get_an_aws_error_type(status: int, code: str) -> None:
    error = invoke_api_error(status, "why")
    assert (error.status, error.error_type, error.message) == (status, code, "why")
    assert error.headers()["X-Amzn-ErrorType"] == code


@pytest.fixture
def bootstrap(tmp_path: Path) -> Path:
    path = tmp_path / "bootstrap"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_time_limit_flags(bootstrap: Path, tmp_path: Path) -> None:
    base = ["--task-root", str(tmp_path)]
    c = load([*base, str(bootstrap)], {})
    assert (c.request_head_timeout_s, c.keepalive_timeout_s) == (10.0, 75.0)
    c = load(
        [*base, "--request-head-timeout", "0.5", "--keepalive-timeout", "0", str(bootstrap)], {}
    )
    assert (c.request_head_timeout_s, c.keepalive_timeout_s) == (0.5, 0.0)
    with pytest.raises(ConfigError, match="--request-head-timeout"):
        load([*base, "--request-head-timeout", "0", str(bootstrap)], {})
    with pytest.raises(ConfigError, match="--keepalive-timeout"):
        load([*base, "--keepalive-timeout", "-1", str(bootstrap)], {})
