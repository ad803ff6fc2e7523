"""`rie tune` end to end: real ries at each memory size under the sandbox, real invocations; the
choice a person would make for a CPU-bound, a sleeping and a memory-hungry function; the JSON
schema; the page rendered in a real (headless) browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rie.dev.tune import SizeResult, choose, cost_per_invocation
from rie.sandbox.policy import capabilities

FN = Path(__file__).resolve().parent / "fixtures" / "fn"
_caps = capabilities()
needs_limits = pytest.mark.skipif(
    _caps.memory is not None or _caps.cpu is not None or not _caps.oom_counted,
    reason=f"memory sizes cannot be enforced here: {_caps.memory or _caps.cpu or 'no OOM counter'}",
)


def tune(tmp_path: Path, event: dict[str, Any], *flags: str) -> tuple[int, dict[str, Any], str]:
    (tmp_path / "event.json").write_text(json.dumps(event))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable, "-m", "rie", "tune",
            "--task-root", str(FN), "--handler", "res.handler",
            "--event", str(tmp_path / "event.json"), "--output", str(out),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    data = json.loads((out / "tune.json").read_text()) if (out / "tune.json").exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


def by_size(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["memory_mb"]: r for r in data["results"]}


@needs_limits
def test_cpu_bound_function_gets_faster_with_memory_and_speed_picks_a_whole_cpu(
    tmp_path: Path,
) -> None:
    # ~20 ms of CPU: ~280 ms at 128 MB (7.2 % of a CPU); at 1,769 MB its CPU time, or somewhat
    # more when this machine's CPUs are busy with other work (hence a margin, not 13.8x)
    work = {"kind": "burn", "n": 500_000}
    code, data, output = tune(
        tmp_path, work, "--memory", "128,1769", "--invocations", "3", "--strategy", "speed"
    )
    assert code == 0, output
    sizes = by_size(data)
    assert sizes[128]["duration_ms"]["p50"] > 2.5 * sizes[1769]["duration_ms"]["p50"], output
    assert data["recommendation"]["memory_mb"] == 1769


@needs_limits
def test_sleeping_function_is_cheapest_at_128(tmp_path: Path) -> None:
    code, data, output = tune(
        tmp_path, {"kind": "sleep", "s": 0.05}, "--memory", "128,1024", "--invocations", "3"
    )
    assert code == 0, output
    assert data["recommendation"]["memory_mb"] == 128
    assert "recommended: 128 MB" in output


@needs_limits
def test_memory_hungry_function_never_gets_a_size_that_fails(tmp_path: Path) -> None:
    code, data, output = tune(
        tmp_path, {"kind": "alloc", "mb": 160}, "--memory", "128,256,512", "--invocations", "2"
    )
    assert code == 0, output
    sizes = by_size(data)
    assert sizes[128]["errors"] > 0
    assert sizes[128]["error_types"].get("Runtime.OutOfMemory", 0) > 0, sizes[128]
    assert sizes[256]["errors"] == 0 and sizes[512]["errors"] == 0
    # allocating is CPU work too: 512 MB may be as cheap (and faster); never below 256 MB
    assert data["recommendation"]["memory_mb"] >= 256
    _check_schema(data)
    _render(tmp_path / "out" / "tune.html", 3, f"{data['recommendation']['memory_mb']} MB")


@needs_limits
def test_no_size_succeeds_exit_1(tmp_path: Path) -> None:
    code, data, output = tune(
        tmp_path, {"kind": "alloc", "mb": 300}, "--memory", "128", "--invocations", "1"
    )
    assert code == 1, output
    assert data["recommendation"] is None


@pytest.mark.parametrize(
    "flags",
    [
        ["--memory", "64"],
        ["--memory", "abc"],
        ["--invocations", "0"],
        ["--balanced-weight", "2"],
        ["--strategy", "cheap"],
        ["--event", "/nonexistent.json"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, flags: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rie", "tune", "--task-root", str(FN), "--handler", "x.h", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") <= 3


def test_strategies_follow_power_tuning() -> None:
    def size(mb: int, ms: float, errors: int = 0, measurable: bool = True) -> SizeResult:
        r = SizeResult(mb, mb / 1769, measurable, invocations=5, errors=errors)
        r.durations_ms = [ms] * 5
        r.billed_ms = [int(ms)] * 5
        r.cost_per_invocation = cost_per_invocation(ms, mb, "x86_64")
        return r

    results = [size(128, 1000), size(256, 480), size(512, 300), size(1024, 290), size(64, 1, 1)]
    assert choose(results, "cost", 0.5)[0].memory_mb == 256  # type: ignore[union-attr]
    assert choose(results, "speed", 0.5)[0].memory_mb == 1024  # type: ignore[union-attr]
    # balanced: 0 is speed, 1 is cost
    assert choose(results, "balanced", 0.0)[0].memory_mb == 1024  # type: ignore[union-attr]
    assert choose(results, "balanced", 1.0)[0].memory_mb == 256  # type: ignore[union-attr]
    # a size with errors is never chosen, even the fastest and cheapest
    assert all(choose(results, s, 0.5)[0].memory_mb != 64 for s in ("cost", "speed"))  # type: ignore[union-attr]
    # a size this machine cannot measure is chosen only if nothing else succeeded
    fast = [size(512, 300), size(4000, 10, measurable=False)]
    assert choose(fast, "speed", 0.5)[0].memory_mb == 512  # type: ignore[union-attr]
    assert choose([size(128, 5, 1)], "cost", 0.5)[0] is None
    # prices: GB-seconds by architecture, the request, ephemeral storage above 512 MB
    assert cost_per_invocation(1000, 1024, "x86_64") == pytest.approx(0.0000166667 + 0.2e-6)
    assert cost_per_invocation(1000, 1024, "arm64") == pytest.approx(0.0000133334 + 0.2e-6)
    assert cost_per_invocation(1000, 1024, "x86_64", 1536) == pytest.approx(
        0.0000166667 + 0.2e-6 + 0.0000000309
    )


def _check_schema(data: dict[str, Any]) -> None:
    """The documented schema of tune.json (docs/resources.md)."""
    assert data["schema_version"] == 1
    assert data["strategy"] in ("cost", "speed", "balanced")
    assert data["architecture"] in ("x86_64", "arm64")
    assert isinstance(data["machine"]["cpus"], int)
    assert set(data["recommendation"]) == {"memory_mb", "reason"}
    for r in data["results"]:
        assert set(r) == {
            "memory_mb", "invocations", "errors", "error_types", "duration_ms", "init_ms",
            "billed_ms_mean", "cost_usd_per_invocation", "cost_usd_per_million", "cpu_share",
            "measurable",
        }  # fmt: skip
        assert set(r["duration_ms"]) == {"p50", "p90", "mean"}
        assert isinstance(r["memory_mb"], int) and isinstance(r["errors"], int)
        assert all(isinstance(v, int) for v in r["error_types"].values())
        assert r["init_ms"] is None or r["init_ms"] > 0
        assert r["cost_usd_per_million"] == pytest.approx(r["cost_usd_per_invocation"] * 1e6)
        assert isinstance(r["measurable"], bool)


def _render(page: Path, expect_points: int, choice: str) -> None:
    """Open the page in headless Chromium: the chart's two lines and the table are there."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium and chromedriver on this machine")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.as_uri())
        chart = driver.find_element(By.ID, "chart")
        assert chart.size["width"] > 300 and chart.size["height"] > 200
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart polyline")) == 2
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart circle")) == 2 * expect_points
        assert len(driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == expect_points
        assert choice in driver.find_element(By.ID, "choice").text
    finally:
        driver.quit()


def test_a_command_after_double_dash_and_a_function_of_a_config(tmp_path: Path) -> None:
    sh = Path(__file__).resolve().parent / "fixtures" / "oom.sh"
    out = tmp_path / "sh"
    argv = [sys.executable, "-m", "rie", "tune", "--memory", "128", "--invocations", "1"]
    proc = subprocess.run(
        [*argv, "--output", str(out), "--", str(sh)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "tune.json").read_text())["results"][0]["errors"] == 0
    (tmp_path / "rie.toml").write_text(
        f'[functions.a]\nhandler = "res.handler"\ntask_root = "{FN}"\n'
        f'[functions.b]\nhandler = "res.handler"\ntask_root = "{FN}"\n'
    )
    config = ["--config", str(tmp_path / "rie.toml"), "--output", str(tmp_path / "c")]
    several = subprocess.run([*argv, *config], capture_output=True, text=True, timeout=60)
    assert several.returncode == 2 and "name the one to tune" in several.stderr
    one = subprocess.run([*argv, "b", *config], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert json.loads((tmp_path / "c" / "tune.json").read_text())["function"] == "b"
