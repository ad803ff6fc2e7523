"""Run sizes: how many samples each scenario takes (`--smoke`, `--quick`, default)."""

from __future__ import annotations

from dataclasses import dataclass, field

KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    name: str
    # runtime client scenario: rounds x invocations per variant per round
    client_rounds: int
    client_batch: int
    # emulator scenario
    emulator_rounds: int
    emulator_batch: int
    # cold start: samples per variant
    cold_samples: int
    cold_emulator_samples: int
    # payload scenario: rounds, and invocations per variant per round for each size
    payload_rounds: int
    payload_counts: dict[int, int]
    # memory: invocations for the leak check, RSS sampled every `memory_step`
    memory_invokes: int
    memory_step: int
    # concurrency: seconds per level and variant, levels, burst sizes and repeats
    concurrency_seconds: float
    concurrency_levels: tuple[int, ...]
    bursts: tuple[int, ...]
    burst_repeats: int
    warmup: int = 200
    # the HTTP front under load: alternated rounds (of `concurrency_seconds` each)
    load_rounds: int = 5
    # --watch: saves measured
    reload_samples: int = 12
    # the dashboard's cost: interleaved rounds of paced windows (seconds each, at `dashboard_rate`
    # invocations/s), then RSS while this many invocations run with a page open
    dashboard_rounds: int = 7
    dashboard_seconds: float = 1.5
    dashboard_rate: int = 1000
    dashboard_rss_invokes: int = 100_000
    notes: list[str] = field(default_factory=list)


SMOKE = Sizes(
    name="smoke",
    client_rounds=2,
    client_batch=100,
    emulator_rounds=2,
    emulator_batch=50,
    cold_samples=3,
    cold_emulator_samples=1,
    payload_rounds=1,
    payload_counts={KB: 5, 100 * KB: 3, MB: 2, 5 * MB: 1},
    memory_invokes=300,
    memory_step=100,
    concurrency_seconds=0.25,
    concurrency_levels=(1, 2, 4),
    bursts=(2,),
    burst_repeats=1,
    warmup=20,
    load_rounds=1,
    reload_samples=2,
    dashboard_rounds=1,
    dashboard_seconds=0.2,
    dashboard_rss_invokes=500,
)

QUICK = Sizes(
    name="quick",
    client_rounds=4,
    client_batch=500,
    emulator_rounds=4,
    emulator_batch=300,
    cold_samples=10,
    cold_emulator_samples=4,
    payload_rounds=2,
    payload_counts={KB: 50, 100 * KB: 20, MB: 5, 5 * MB: 2},
    memory_invokes=3000,
    memory_step=500,
    concurrency_seconds=1.0,
    concurrency_levels=(1, 2, 4, 8),
    bursts=(2, 4, 8),
    burst_repeats=2,
    warmup=100,
    load_rounds=2,
    reload_samples=3,
    dashboard_rounds=2,
    dashboard_seconds=0.3,
    dashboard_rss_invokes=2000,
)

DEFAULT = Sizes(
    name="default",
    client_rounds=10,
    client_batch=1000,
    emulator_rounds=10,
    emulator_batch=600,
    cold_samples=30,
    cold_emulator_samples=12,
    payload_rounds=5,
    payload_counts={KB: 100, 100 * KB: 40, MB: 10, 5 * MB: 4},
    memory_invokes=20000,
    memory_step=1000,
    concurrency_seconds=3.0,
    concurrency_levels=(1, 2, 4, 8),
    bursts=(2, 4, 8),
    burst_repeats=4,
    warmup=300,
)

SIZES = {s.name: s for s in (SMOKE, QUICK, DEFAULT)}


@dataclass(frozen=True)
class Config:
    sizes: Sizes
    peer_rie: str | None = None
    peer_sls: str | None = None
    only: tuple[str, ...] = ()
