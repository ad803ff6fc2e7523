"""Config of the Runtime API's own endpoint: time limits and the address it is bound to."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from rie.settings.config import load
from rie.settings.errors import ConfigError


@pytest.fixture
def base(tmp_path: Path) -> list[str]:
    path = tmp_path / "bootstrap"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return ["--task-root", str(tmp_path), str(path)]


def test_time_limits_default_and_flags(base: list[str]) -> None:
    c = load(base, {})
    assert c.request_head_timeout_s == 10.0 and c.keepalive_timeout_s == 75.0
    c = load(["--request-head-timeout", "2.5", "--keepalive-timeout", "0.5", *base], {})
    assert c.request_head_timeout_s == 2.5 and c.keepalive_timeout_s == 0.5


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--request-head-timeout", "0"),
        ("--request-head-timeout", "-1"),
        ("--keepalive-timeout", "-1"),  # 0 is allowed: idle connections are closed at once
    ],
)
def test_time_limits_must_be_positive(base: list[str], flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        load([flag, value, *base], {})


@pytest.mark.parametrize(
    ("flag", "host", "port"),
    [("127.0.0.2:9100", "127.0.0.2", 9100), ("[::1]:0", "::1", 0), ("localhost:0", "127.0.0.1", 0)],
)
def test_any_loopback_runtime_api_address_is_kept(
    base: list[str], flag: str, host: str, port: int
) -> None:
    c = load(["--runtime-api-address", flag, *base], {})
    assert (c.runtime_api_address.host, c.runtime_api_address.port) == (host, port)
    assert not c.warnings


def test_a_loopback_address_this_machine_cannot_listen_on_is_refused(
    base: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoIPv6(socket.socket):
        def bind(self, address: object) -> None:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(socket, "socket", NoIPv6)
    with pytest.raises(ConfigError, match=r"--runtime-api-address: cannot listen on ::1"):
        load(["--runtime-api-address", "[::1]:9001", *base], {})
