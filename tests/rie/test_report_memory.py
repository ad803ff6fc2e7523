"""`Max Memory Used` of REPORTs whose runtime is gone before the REPORT is written (issue 16,
item 16): one killed at shutdown while it runs, and inits that fail (an init error, then its
exit; an exit by itself). The figure is the peak measured while the runtime lived, not 0."""

from __future__ import annotations

import json
import threading

import pytest

from tests.rie.conftest import do, mb, report, scripted

ALLOC_MB = 64


@pytest.mark.timeout(60)
def test_a_runtime_killed_at_shutdown_reports_its_peak() -> None:
    r = scripted("--shutdown-timeout", "0.5").start()
    try:
        replies: list[object] = []
        t = threading.Thread(
            target=lambda: replies.append(
                do(r, {"alloc": ALLOC_MB}, {"print": "allocated"}, {"sleep": 600})
            ),
            daemon=True,
        )
        t.start()
        r.wait_for("allocated", 30)
    finally:
        r.stop()
    m = r.wait_for(r"REPORT RequestId: (\S+)\t", 5)
    assert mb(report(r, m.group(1))["Max Memory Used"]) >= ALLOC_MB, m.group(0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "init_do",
    [
        [{"alloc": ALLOC_MB}, {"post": "init/error", "body": '{"errorType":"X"}'}, {"exit": 1}],
        [{"alloc": ALLOC_MB}, {"exit": 3}],
    ],
    ids=["init-error", "exit"],
)
def test_a_failed_init_reports_its_peak(init_do: list[dict[str, object]]) -> None:
    with scripted(env={"INIT_DO": json.dumps(init_do)}) as r:
        reply = r.invoke({})
        request_id = reply.header("x-amzn-requestid")
        assert reply.header("x-amz-function-error"), reply.body
        fields = report(r, str(request_id))
    assert mb(fields["Max Memory Used"]) >= ALLOC_MB, fields["line"]
