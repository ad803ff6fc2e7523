"""The HTTP front under load: 8 keep-alive clients on `GET /hello/{name}`, rie against
serverless-offline (`--peer-sls PATH` to its `serverless.js`), rounds alternated.

rie serves the REST API format (`--http-format rest-api --route 'GET /hello/{name}'`) with this
project's runtime; serverless-offline serves the same Python handler behind an `http` event, with
its own Python runner. The load comes from wrk (`-t1 -c8`, when installed) or else from an asyncio
(uvloop) keep-alive generator in the benchmark process; either way its CPU is not counted: the CPU
per request is read, per process, from /proc schedstat over each round (the emulator's process,
and its children: the runtimes for rie, the Python runners for serverless-offline).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.config import Config
from benchmarks.floor_server import run_loop
from benchmarks.scenarios import Say
from benchmarks.scenarios.http_front import _front_port

TITLE = "HTTP front under load (8 keep-alive clients, GET /hello/{name})"
CLIENTS = 8
PATH = "/hello/bench"
SLS_YML = """\
service: pyrie-bench
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.11
  region: us-east-1
plugins:
  - serverless-offline
functions:
  hello:
    handler: noop.hello
    events:
      - http:
          method: get
          path: hello/{name}
"""
_SLS_READY = re.compile(rb"Server ready: http://localhost:(\d+)")


def sls_problem(path: str | None) -> str | None:
    if not path:
        return "serverless-offline was not given (pass --peer-sls PATH to its serverless.js)"
    if not os.path.isfile(path):
        return f"--peer-sls {path}: no such file"
    if shutil.which("node") is None:
        return "node is not installed"
    return None


class Peer:
    """serverless-offline in a service directory next to its node_modules (where it finds the
    serverless-offline plugin), with the benchmark's handler copied in."""

    def __init__(self, serverless_js: str) -> None:
        self.js = os.path.realpath(serverless_js)
        parts = Path(self.js).parts
        root = Path(*parts[: parts.index("node_modules")]) if "node_modules" in parts else None
        self.root = root or Path(self.js).parent
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None
        self.port = 0

    def start(self, timeout: float = 90.0) -> Peer:
        self.dir = Path(tempfile.mkdtemp(prefix="pyrie-bench-sls-", dir=self.root))
        (self.dir / "serverless.yml").write_text(SLS_YML)
        shutil.copy(harness.HANDLERS / "noop.py", self.dir / "noop.py")
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
            SLS_TELEMETRY_DISABLED="1",
            SLS_NOTIFICATIONS_MODE="off",
        )
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the process)
        cmd = ["node", self.js, "offline", "start", "--noPrependStageInUrl"]
        cmd += ["--httpPort", str(harness.free_port()), "--lambdaPort", str(harness.free_port())]
        self.proc = harness.spawn(cmd, cwd=self.dir, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while not (m := _SLS_READY.search(self._text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self._text().decode(errors="replace")[-1500:]
                self.stop()
                raise RuntimeError(f"serverless-offline did not start:\n{text}")
            time.sleep(0.05)
        self.port = int(m.group(1))
        return self

    def _text(self) -> bytes:
        if self.log is None:
            return b""
        self.log.seek(0)
        return bytes(self.log.read())

    def stop(self) -> None:
        if self.proc is not None:
            harness.kill(self.proc, graceful=True)
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class Target:
    """One server under load: where to send requests and which processes to charge."""

    def __init__(self, name: str, port: int, pid: int, names: tuple[str, str]) -> None:
        self.name, self.port, self.pid = name, port, pid
        self.names = names  # (the server process, its children)

    def cpu(self) -> dict[int, int]:
        return {pid: harness.cpu_ns(pid) for pid in [self.pid, *harness.descendants(self.pid)]}


def _load_wrk(port: int, seconds: float) -> tuple[int, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CLIENTS}",
            f"-d{max(1, round(seconds))}s",
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + harness.TIME_LIMIT_S,
        check=True,
    ).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError(f"wrk said: {out[-500:]}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad.group(1)} requests failed: {out[-500:]}")
    elapsed = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return int(m.group(1)), elapsed


async def _client(port: int, end: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        while time.perf_counter() < end:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"answered {head[:100]!r}")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError("an answer without Content-Length")
            await reader.readexactly(int(length.group(1)))
            counts[0] += 1
    finally:
        writer.close()


def _load_asyncio(port: int, seconds: float) -> tuple[int, float]:
    counts = [0]

    async def main() -> None:
        end = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, end, counts) for _ in range(CLIENTS)))

    t0 = time.perf_counter()
    run_loop(main)
    return counts[0], time.perf_counter() - t0


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "asyncio"


def load(port: int, seconds: float) -> tuple[int, float]:
    """Requests answered and seconds taken by CLIENTS keep-alive clients for about `seconds`."""
    return _load_wrk(port, seconds) if generator() == "wrk" else _load_asyncio(port, seconds)


def measure(
    targets: list[Target], rounds: int, seconds: float
) -> dict[str, list[dict[str, float]]]:
    """Alternate the targets round by round (A B, B A, ...): requests/s and CPU µs per request of
    the server process and of its children, per round."""
    out: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for r in range(rounds):
        order = targets if r % 2 == 0 else targets[::-1]
        for t in order:
            before = t.cpu()
            count, elapsed = load(t.port, seconds)
            after = t.cpu()
            n = max(1, count)
            own = (after.get(t.pid, 0) - before.get(t.pid, 0)) / 1000 / n
            # a child that appeared during the round counts whole
            kids = sum(v - before.get(p, 0) for p, v in after.items() if p != t.pid) / 1000 / n
            out[t.name].append(
                {"per_second": count / elapsed, "server_us": own, "children_us": kids}
            )
    return out


def rie_emulator(tree: Path = harness.REPO) -> harness.Emulator:
    return harness.Emulator(
        "rie",
        "runtime",
        handler="noop.hello",
        tree=tree,
        extra_args=(
            "--http",
            "127.0.0.1:0",
            "--http-format",
            "rest-api",
            "--route",
            "GET /hello/{name}",
        ),
    )


def summarize(name: str, rounds: list[dict[str, float]], names: tuple[str, str]) -> dict[str, Any]:
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {
        "variant": name,
        "rounds": len(rounds),
        "per_second": round(med["per_second"], 1),
        "server": names[0],
        "server_cpu_us": round(med["server_us"], 1),
        "children": names[1],
        "children_cpu_us": round(med["children_us"], 1),
        "cpu_us": round(statistics.median(r["server_us"] + r["children_us"] for r in rounds), 1),
    }


def run(config: Config, say: Say) -> dict[str, Any]:
    sizes = config.sizes
    skipped: dict[str, str] = {}
    why = harness.CLIENTS["runtime"].missing()
    if why:
        return {"title": TITLE, "rows": [], "skipped": {"http_load": why}}
    why_sls = sls_problem(config.peer_sls)
    if why_sls:
        skipped["serverless-offline"] = why_sls
        say(f"  skipped serverless-offline: {why_sls}")
    emu = rie_emulator()
    peer = Peer(config.peer_sls) if config.peer_sls and not why_sls else None
    seconds = sizes.concurrency_seconds
    try:
        emu.start()
        assert emu.proc is not None
        targets = [Target("rie", _front_port(emu), emu.proc.pid, ("rie", "runtimes"))]
        if peer is not None:
            try:
                peer.start()
                assert peer.proc is not None
                targets.append(
                    Target(
                        "serverless-offline", peer.port, peer.proc.pid, ("node", "python runners")
                    )
                )
            except (RuntimeError, OSError) as e:
                skipped["serverless-offline"] = f"failed to start: {e}"
                say(f"  skipped serverless-offline: {e}")
        # warm up: every environment and runner the load needs exists, and node's JIT has
        # compiled its hot paths (serverless-offline runs at half speed for its first seconds)
        for t in targets:
            load(t.port, min(1.0, seconds) if t.name == "rie" else 3 * seconds)
        per_round = measure(targets, sizes.load_rounds, seconds)
    finally:
        emu.stop()
        if peer is not None:
            peer.stop()
    rows = [summarize(t.name, per_round[t.name], t.names) for t in targets]
    ratios = {}
    if per_round.get("serverless-offline"):
        ratios["rie / serverless-offline requests/s"] = harness.pair_ratios(
            [r["per_second"] for r in per_round["rie"]],
            [r["per_second"] for r in per_round["serverless-offline"]],
        )
    return {
        "title": TITLE,
        "method": (
            f"{sizes.load_rounds} alternated rounds of {seconds} s per server after a warm-up "
            f"({3 * seconds} s for serverless-offline: node's JIT); "
            f"{CLIENTS} keep-alive clients from {generator()}"
            + (" (-t1)" if generator() == "wrk" else " in the benchmark process")
            + "; CPU per request from /proc schedstat of the server process and of its children "
            "(the load generator's is not counted); rie: --http-format rest-api, this project's "
            "runtime, default --max-concurrency"
        ),
        "generator": generator(),
        "rows": rows,
        "ratios": ratios,
        "per_round": per_round,
        "skipped": skipped,
    }
