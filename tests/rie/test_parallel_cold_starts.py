"""Many cold starts at once (issue 16, item 1): a runtime's first `next` can arrive before the
spawn that started it has returned to the loop. With a runtime that gives up on any failed call
(AWS's tutorial runtime in sh + curl), every one of the parallel cold invokes must still succeed."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from benchmarks.soak import STRICT_SH as STRICT_CURL_SH  # the soak's cold starts use it too
from tests.helpers import rie

PARALLEL = 60


@pytest.mark.timeout(180)  # a guard: a few seconds here
def test_parallel_cold_starts_of_a_strict_runtime_all_succeed() -> None:
    # each answer takes a moment, so that the invokes overlap and most start an environment
    env = {"ANSWER_DELAY": "0.5"}
    with rie("--max-concurrency", str(PARALLEL), "--", str(STRICT_CURL_SH), env=env) as r:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            replies = list(pool.map(lambda i: r.invoke({"i": i}, timeout=120), range(PARALLEL)))
        failed = [
            (x.status, x.body)
            for x in replies
            if x.status != 200 or x.header("x-amz-function-error")
        ]
        assert failed == [], f"{len(failed)} of {PARALLEL} failed, e.g. {failed[0]}"
        assert [json.loads(x.body) for x in replies] == [{"i": i} for i in range(PARALLEL)]
        # the invokes overlapped: most of them were cold starts
        assert r.output().count("Init Duration") > PARALLEL // 2
        assert "Traceback" not in r.output()
