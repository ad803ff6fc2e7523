"""`python -m benchmarks [--quick | --smoke] [--peer-rie PATH] [--peer-sls PATH]`: run every scenario, print a table and
the goals, write the raw results as JSON, draw the plots, and (for a full run) rewrite RESULTS.md.

A full (default) run writes benchmarks/RESULTS.md, benchmarks/results.json and benchmarks/plots/*.png;
`--quick` and `--smoke` write into the output directory only (default benchmarks/out/, git-ignored),
so a smoke run never touches the committed results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import harness, report
from benchmarks.config import DEFAULT, QUICK, SIZES, SMOKE, Config
from benchmarks.floor_server import LOOP_NAME
from benchmarks.scenarios import (
    cold_start,
    concurrency,
    dashboard,
    emulator,
    extensions,
    http_front,
    http_load,
    memory,
    payload,
    reload,
    runtime_client,
)

SCENARIOS = {
    "runtime_client": runtime_client,
    "emulator": emulator,
    "cold_start": cold_start,
    "payload": payload,
    "memory": memory,
    "concurrency": concurrency,
    "http_front": http_front,
    "http_load": http_load,
    "reload": reload,
    "extensions": extensions,
    "dashboard": dashboard,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a run under 2 minutes")
    size.add_argument(
        "--smoke", action="store_true", help="the smallest run (the test suite's smoke test)"
    )
    p.add_argument(
        "--peer-rie",
        metavar="PATH",
        help="the official Go emulator's aws-lambda-rie binary, to compare with",
    )
    p.add_argument(
        "--peer-sls",
        metavar="PATH",
        help="serverless-offline's serverless.js (npm serverless@3 + serverless-offline@13), "
        "to compare the HTTP front with",
    )
    p.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    p.add_argument(
        "--out",
        type=Path,
        default=harness.BENCH_DIR / "out",
        help="raw JSON (and, unless a full run, plots and markdown)",
    )
    p.add_argument(
        "--results",
        type=Path,
        help="markdown file to write (default: benchmarks/RESULTS.md for a full run)",
    )
    p.add_argument(
        "--plots", type=Path, help="plot directory (default: benchmarks/plots for a full run)"
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="run nothing: re-render table, plots and markdown from a results JSON",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else DEFAULT
    only = tuple(s for s in args.only.split(",") if s)
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        print(
            f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    config = Config(sizes=sizes, peer_rie=args.peer_rie, peer_sls=args.peer_sls, only=only)
    full = sizes is DEFAULT and not only
    harness.install_cleanup()

    def say(line: str) -> None:
        print(line, flush=True)

    notes = []
    if sys.prefix == sys.base_prefix:
        notes.append(
            "not run from a virtual environment: start-up figures include the base interpreter's .pth files"
        )
    compiled = harness.compile_sources()
    if compiled:
        notes.append(compiled)
    why_go = harness.peer_rie_problem(args.peer_rie)
    if why_go:
        notes.append(f"Go emulator: skipped ({why_go})")
        say(f"Go emulator: skipped ({why_go})")
    command = (
        "python -m benchmarks"
        + ("" if sizes is DEFAULT else f" --{sizes.name}")
        + (f" --peer-rie {shlex.quote(args.peer_rie)}" if args.peer_rie else "")
        + (f" --peer-sls {shlex.quote(args.peer_sls)}" if args.peer_sls else "")
        + (f" --only {args.only}" if only else "")
    )
    if args.from_json:
        return render(
            json.loads(args.from_json.read_text()),
            args,
            full=args.results is None and args.plots is None,
        )
    results: dict[str, Any] = {}
    started = time.monotonic()
    for name, module in SCENARIOS.items():
        if only and name not in only:
            continue
        t0 = time.monotonic()
        say(f"-- {name}: {module.TITLE}")
        try:
            results[name] = module.run(config, say)
        except Exception as e:  # one broken scenario must not lose the others' figures
            traceback.print_exc()
            results[name] = {
                "title": module.TITLE,
                "error": repr(e),
                "rows": [],
                "skipped": {name: f"failed: {e!r}"},
            }
            say(f"  scenario {name} failed: {e!r}")
        finally:
            harness.kill_all()
        say(f"   ({time.monotonic() - t0:.1f} s)")
    seconds = time.monotonic() - started
    results["meta"] = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "size": sizes.name,
        "seconds": round(seconds, 1),
        "machine": report.machine(),
        "floor_loop": LOOP_NAME,
        "notes": notes,
    }
    results["goals"] = report.goals(results)
    return render(results, args, full)


def render(results: dict[str, Any], args: argparse.Namespace, full: bool) -> int:
    """Print the table and goals; write the JSON, plots and markdown."""
    size = results["meta"]["size"]
    full = full and size == DEFAULT.name
    out_dir: Path = args.out
    results_md: Path = args.results or (
        harness.BENCH_DIR / "RESULTS.md" if full else out_dir / f"RESULTS-{size}.md"
    )
    plot_dir: Path = args.plots or (harness.BENCH_DIR / "plots" if full else out_dir / "plots")
    notes = results["meta"].setdefault("notes", [])
    editable = report.editable_finder_note()
    if editable and editable not in notes:
        notes.append(editable)
    results["goals"] = report.goals(_complete(results))
    print(report.console(_complete(results)))
    json_path = out_dir / f"results-{size}.json"
    report.write_json(results, json_path)
    if full:
        report.write_json(results, harness.BENCH_DIR / "results.json")
    plot_paths: list[Path] = []
    plot_note = None
    if not args.no_plots:
        plot_paths, plot_note = report.plots(_complete(results), plot_dir)
        if plot_note:
            print(plot_note)
    results_md.parent.mkdir(parents=True, exist_ok=True)
    kept = report.kept_sections(results_md)
    results_md.write_text(
        report.results_markdown(_complete(results), plot_paths, results_md, plot_note) + kept
    )
    print(
        f"\nraw results: {json_path}\nmarkdown: {results_md}"
        + (f"\nplots: {plot_dir}" if plot_paths else ""),
        flush=True,
    )
    print(f"total {results['meta']['seconds']:.1f} s")
    return 0


def _complete(results: dict[str, Any]) -> dict[str, Any]:
    """Scenarios that failed keep only an error; give them empty fields the report can walk."""
    out = dict(results)
    for name in SCENARIOS:
        r = out.get(name)
        if r and "error" in r:
            out[name] = None
    return out


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT", "QUICK", "SIZES", "SMOKE", "main"]
