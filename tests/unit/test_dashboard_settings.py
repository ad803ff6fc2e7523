"""`--dashboard [HOST:]PORT` (loopback unless a host is named; one emulator-level address that
every function of a --config file shares) and which Host/Origin values the dashboard answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rie.fronts.dashboard import AllowedHosts
from rie.settings.config import Address
from rie.settings.errors import ConfigError
from rie.settings.load import load_all


def _one(tmp_path: Path, *flags: str) -> list[str]:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return e\n")
    return ["--task-root", str(tmp_path), "--handler", "app.handler", *flags]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("9000", Address("127.0.0.1", 9000)),
        (":9000", Address("127.0.0.1", 9000)),
        ("localhost:9000", Address("127.0.0.1", 9000)),
        ("0.0.0.0:9000", Address("0.0.0.0", 9000)),
        ("[::1]:9000", Address("::1", 9000)),
    ],
)
def test_the_address_is_loopback_unless_a_host_is_named(
    tmp_path: Path, given: str, expected: Address
) -> None:
    [config] = load_all(_one(tmp_path, "--dashboard", given), {})
    assert config.dashboard_address == expected


def test_no_dashboard_unless_asked(tmp_path: Path) -> None:
    [config] = load_all(_one(tmp_path), {})
    assert config.dashboard_address is None


@pytest.mark.parametrize("bad", ["web", "9000x", "127.0.0.1:99999"])
def test_a_bad_address_names_the_flag(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="--dashboard"):
        load_all(_one(tmp_path, "--dashboard", bad), {})


def test_every_function_of_a_config_file_shares_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return e\n")
    path = tmp_path / "rie.toml"
    path.write_text(
        f'[functions.a]\nhandler = "app.handler"\ntask_root = "{tmp_path}"\n'
        f'[functions.b]\nhandler = "app.handler"\ntask_root = "{tmp_path}"\n'
    )
    a, b = load_all(["--config", str(path), "--dashboard", "9100"], {})
    assert a.dashboard_address == b.dashboard_address == Address("127.0.0.1", 9100)


def test_loopback_accepts_its_own_names_only() -> None:
    allowed = AllowedHosts("127.0.0.1", 9000)
    for host in ("127.0.0.1:9000", "localhost:9000", "[::1]:9000", "LOCALHOST:9000"):
        assert allowed.allows(host), host
    # DNS rebinding: a name that resolves here is still someone else's; another port is not us
    for host in ("evil.example:9000", "127.0.0.1:9001", "localhost", "", "10.0.0.1:9000"):
        assert not allowed.allows(host), host


def test_every_address_accepts_any_address_but_no_foreign_name() -> None:
    allowed = AllowedHosts("0.0.0.0", 9000)
    assert allowed.allows("192.168.1.20:9000") and allowed.allows("localhost:9000")
    assert not allowed.allows("evil.example:9000")


def test_a_named_host_is_accepted() -> None:
    allowed = AllowedHosts("devbox.internal", 9000)
    assert allowed.allows("devbox.internal:9000")
    assert not allowed.allows("evil.example:9000")


def test_the_origin_must_be_the_pages_own() -> None:
    allowed = AllowedHosts("127.0.0.1", 9000)
    assert allowed.origin_ok("http://127.0.0.1:9000", "127.0.0.1:9000")
    assert not allowed.origin_ok("http://localhost:9000", "127.0.0.1:9000")
    assert not allowed.origin_ok("null", "127.0.0.1:9000")
    assert not allowed.origin_ok("https://127.0.0.1:9000", "127.0.0.1:9000")


def test_nothing_of_the_dashboard_is_imported_without_the_flag() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rie.app, rie.functions.registry, rie.sandbox.environment; "
        "print([m for m in ('rie.fronts.dashboard', 'rie.observe.feed') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
