"""The HTTP front of two rie trees, and serverless-offline, under the same load in interleaved
rounds: `python -m benchmarks.ab_front [--rounds N] [--seconds S] OLD_TREE SLS_JS`.

The load is http_load's (8 keep-alive clients from wrk, `GET /hello/{name}`, REST API format,
this project's runtime); each round runs the three servers in turn, the order reversed every other
round. A tree is a checkout of the repository (e.g. `git archive COMMIT | tar -x -C /tmp/old`);
the new tree is this one. Prints medians (requests/s, CPU µs per request of rie's process and of
its runtimes) and the per-round ratios against serverless-offline.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.scenarios import http_load
from benchmarks.scenarios.http_front import _front_port

SLS = "serverless-offline"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab_front")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", type=Path, help="write the per-round figures here")
    p.add_argument("old", type=Path)
    p.add_argument("sls")
    args = p.parse_args()
    old, new = http_load.rie_emulator(args.old), http_load.rie_emulator()
    peer = http_load.Peer(args.sls)
    try:
        targets = []
        for name, emu in (("rie before", old), ("rie after", new)):
            emu.start()
            assert emu.proc is not None
            targets.append(http_load.Target(name, _front_port(emu), emu.proc.pid, ("", "")))
        peer.start()
        assert peer.proc is not None
        targets.append(http_load.Target(SLS, peer.port, peer.proc.pid, ("", "")))
        for t in targets:  # warm-up: environments exist, node's JIT has compiled its hot paths
            http_load.load(t.port, 1.0 if t.name != SLS else 3 * args.seconds)
        per = http_load.measure(targets, args.rounds, args.seconds)
    finally:
        old.stop()
        new.stop()
        peer.stop()
    if args.json:
        args.json.write_text(json.dumps(per, indent=1))
    for name, rounds in per.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        ratios = [r["per_second"] / s["per_second"] for r, s in zip(rounds, per[SLS], strict=True)]
        print(
            f"{name:18s} {med['per_second']:8.1f}/s  server {med['server_us']:6.1f} µs/request  "
            f"children {med['children_us']:6.1f} µs  / {SLS} {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f})"
        )
    before, after = per["rie before"], per["rie after"]
    cpu = [a["server_us"] / b["server_us"] for a, b in zip(after, before, strict=True)]
    rate = [a["per_second"] / b["per_second"] for a, b in zip(after, before, strict=True)]
    print(
        f"after / before: rie CPU per request {statistics.median(cpu):.2f}x "
        f"({min(cpu):.2f}-{max(cpu):.2f}), requests/s {statistics.median(rate):.2f}x "
        f"({min(rate):.2f}-{max(rate):.2f})"
    )


if __name__ == "__main__":
    main()
