"""Config of the Runtime API's own endpoint: time limits and the address it is bound to."""

from __future__ import annotations

from pathlib import Path

import pytest

from rie.config import ConfigError, load


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


@pytest.mark.parametrize("flag", ["--request-head-timeout", "--keepalive-timeout"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_time_limits_must_be_positive(base: list[str], flag: str, value: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        load([flag, value, *base], {})
