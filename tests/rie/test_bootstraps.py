"""Real bootstraps under rie: awslambdaric from PyPI, and a Node.js runtime loop."""

from __future__ import annotations

import base64
import json
import shutil
import threading

import pytest

from tests.helpers import FIXTURES
from tests.rie.conftest import NODE_JS, PY, TRACE, good_invoke, report, ric, rie

NODE = shutil.which("node")


def test_awslambdaric_sees_the_invocation_context() -> None:
    # the project's shared handler fixture, run by the official runtime client
    task_root = str(FIXTURES / "handlers")
    with rie("--task-root", task_root, "--", PY, "-m", "awslambdaric", "context_dump.handler") as r:
        cc = {"custom": {"c": 1}, "env": {"e": 2}, "client": {"installation_id": "inst"}}
        reply = r.invoke(
            {"k": 1},
            headers={
                "X-Amz-Client-Context": base64.b64encode(json.dumps(cc).encode()).decode(),
                "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                "X-Amz-Tenant-Id": "t-1",
            },
        )
        assert reply.status == 200, reply.body
        ctx = reply.json()
        assert ctx["aws_request_id"] == reply.header("X-Amzn-RequestId")  # type: ignore[index]
        assert ctx["function_name"] == "test_function"  # type: ignore[index]
        assert ctx["function_version"] == "$LATEST"  # type: ignore[index]
        assert ctx["invoked_function_arn"] == (  # type: ignore[index]
            "arn:aws:lambda:us-east-1:012345678912:function:test_function"
        )
        assert ctx["memory_limit_in_mb"] == "3008"  # type: ignore[index]
        assert ctx["log_group_name"] == "/aws/lambda/test_function"  # type: ignore[index]
        assert ctx["client_context"]["custom"] == {"c": 1}  # type: ignore[index]
        assert ctx["client_context"]["client"]["installation_id"] == "inst"  # type: ignore[index]
        assert ctx["tenant_id"] == "t-1"  # type: ignore[index]
        assert ctx["trace_env"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"  # type: ignore[index]
        assert ctx["remaining_positive"] is True  # type: ignore[index]
        # without a trace header, awslambdaric still gets a well-formed one
        reply = r.invoke({})
        assert TRACE.match(reply.json()["trace_env"])  # type: ignore[index]


def test_awslambdaric_function_error_and_recovery() -> None:
    with ric("app.main") as r:
        reply = r.invoke({"fail": True})
        assert reply.status == 200
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        body = reply.json()
        assert body["errorType"] == "ValueError"  # type: ignore[index]
        assert body["errorMessage"] == "handler failed on purpose"  # type: ignore[index]
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        assert "Status" not in rep, rep["line"]
        reply = r.invoke({"ok": 1})
        assert reply.json()["event"] == {"ok": 1}  # type: ignore[index]


def test_awslambdaric_large_allocation_shows_in_max_memory_used() -> None:
    with ric("app.alloc") as r:
        reply = r.invoke({"mb": 100})
        assert reply.status == 200, reply.body
        rep = report(r, reply.header("X-Amzn-RequestId") or "")
        used = int(rep["Max Memory Used"].split()[0])
        assert 100 <= used < 3008, rep["line"]


def test_awslambdaric_output_streams_while_the_handler_runs() -> None:
    with ric("app.slow") as r:
        good = r.invoke({"sleep": 0})
        assert good.json() == "slow done"
        box: dict[str, object] = {}
        t = threading.Thread(target=lambda: box.update(reply=r.invoke({"sleep": 2})))
        t.start()
        r.wait_for(r"slow-marker (?!" + good.header("X-Amzn-RequestId") + ")", 10)  # type: ignore[operator]
        assert t.is_alive(), "the handler's output appeared only after the invoke ended"
        t.join(30)
        assert box["reply"].status == 200  # type: ignore[attr-defined]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_bootstrap() -> None:
    with rie("--", NODE or "node", str(NODE_JS)) as r:
        reply = r.invoke({"from": "test"}, headers={"X-Amz-Log-Type": "Tail"})
        assert reply.status == 200, reply.body
        body = reply.json()
        rid = reply.header("X-Amzn-RequestId")
        assert body == {  # type: ignore[comparison-overlap]
            "runtime": "node",
            "requestId": rid,
            "traceId": body["traceId"],  # type: ignore[index]
            "event": {"from": "test"},
        }
        assert TRACE.match(body["traceId"])  # type: ignore[index]
        log = base64.b64decode(reply.header("X-Amz-Log-Result") or "").decode()
        assert f"node handling {rid}" in log
        reply = r.invoke({"fail": True})
        assert reply.header("X-Amz-Function-Error") == "Unhandled"
        assert reply.json() == {"errorMessage": "node failed", "errorType": "NodeError"}
        good_invoke(r)
