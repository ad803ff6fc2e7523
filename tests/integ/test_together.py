"""The merged features together, as a demanding user drives them: a SAM template's Api, HttpApi and
Function URL functions behind one `--http` front (each with its own event version), a TOML config's
per-function front settings, `/lambda-url/NAME/` with several functions, `/metrics` and the
shutdown summary per function, `rie invoke` against several functions, and the `[NAME]` log
prefixes of two functions printing at once."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.helpers import REPO, Reply, RieProcess, rie

pytest.importorskip("yaml")

APP = """
import json, sys
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("shout"):
        # several writes per line, a line without its newline, a long line: all whole in the log
        for i in range(200):
            sys.stdout.write(f"{context.function_name} line {i} ")
            sys.stdout.write("part two\\n")
        sys.stdout.write("x" * 30000 + "\\n")
        print(f"{context.function_name} unfinished", end="")
        return {"done": context.function_name}
    print("serving", context.function_name)
    if (event.get("queryStringParameters") or {}).get("sleep"):
        import time
        time.sleep(float(event["queryStringParameters"]["sleep"]))
        print("slept", context.aws_request_id)
    http = (event.get("requestContext") or {}).get("http") or {}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({
            "fn": context.function_name,
            "version": event.get("version"),
            "multi": "multiValueHeaders" in event,
            "path": event.get("rawPath") or event.get("path"),
            "route": event.get("routeKey") or event.get("resource"),
            "params": event.get("pathParameters"),
            "method": http.get("method") or event.get("httpMethod"),
        }),
    }
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: code/
    Handler: app.handler
    Timeout: 10
Resources:
  RestFn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Get:
          Type: Api
          Properties: {Path: "/rest/{id}", Method: get}
  HttpFn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Get:
          Type: HttpApi
          Properties: {Path: "/http/{id}", Method: get}
  UrlFn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionUrlConfig:
        AuthType: NONE
        InvokeMode: BUFFERED
        Cors: {AllowOrigins: ["https://app.example"], AllowMethods: [GET], MaxAge: 60}
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text(APP)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path / "template.yaml"


def _front(r: RieProcess) -> tuple[str, int]:
    m = r.wait_for(r"HTTP front \(.*\) listening on http://([\d.]+):(\d+)", 15)
    return m.group(1), int(m.group(2))


def _get(where: tuple[str, int], path: str, headers: dict[str, str] | None = None) -> Reply:
    conn = http.client.HTTPConnection(*where, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def test_a_templates_api_httpapi_and_url_functions_behind_one_front(tmp_path: Path) -> None:
    with rie("--template", str(_project(tmp_path)), "--http", "127.0.0.1:0") as r:
        where = _front(r)
        rest = _get(where, "/rest/7")
        assert rest.status == 200, rest.body
        assert rest.json() == {
            "fn": "RestFn",
            "version": None,  # a REST API's 1.0 event has no version field
            "multi": True,
            "path": "/rest/7",
            "route": "/rest/{id}",
            "params": {"id": "7"},
            "method": "GET",
        }
        got = _get(where, "/http/8")
        assert got.status == 200 and got.json() == {
            "fn": "HttpFn",
            "version": "2.0",
            "multi": False,
            "path": "/http/8",
            "route": "GET /http/{id}",
            "params": {"id": "8"},
            "method": "GET",
        }
        # the Function URL function, among several: at /lambda-url/NAME/, the rest is its path
        url = _get(where, "/lambda-url/UrlFn/a/b?q=1", {"Origin": "https://app.example"})
        assert url.status == 200 and url.json()["version"] == "2.0"
        assert url.json()["path"] == "/a/b" and url.json()["route"] == "$default"
        assert url.header("access-control-allow-origin") == "https://app.example"
        # its CORS configuration answers a preflight without invoking it
        conn = http.client.HTTPConnection(*where, timeout=30)
        conn.request(
            "OPTIONS",
            "/lambda-url/UrlFn/a",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        )
        pre = conn.getresponse()
        pre.read()
        conn.close()
        assert pre.status == 200 and pre.getheader("Access-Control-Max-Age") == "60"
        # what nothing serves: AWS's 404 JSON, and a line saying how to give routes
        missing = _get(where, "/nowhere")
        assert missing.status == 404 and missing.json() == {"message": "Not Found"}
        assert missing.header("content-type") == "application/json"
        r.wait_for(r"nothing serves GET /nowhere .*--route.*/lambda-url/NAME/", 15)
        # every sample carries its function; the front's answers are counted per function
        metrics = r.request("GET", "/metrics").body.decode()
        samples = [ln for ln in metrics.splitlines() if ln and not ln.startswith("#")]
        unrouted = [ln for ln in samples if ln.startswith("rie_http_unrouted_total")]
        assert unrouted == [
            'rie_http_unrouted_total{front="http",format="rest-api",code="404"} 1'
        ], metrics  # the 404 is no function's (its format is the first function's)
        samples = [ln for ln in samples if ln not in unrouted]
        assert samples and all('function="' in ln for ln in samples), metrics
        assert 'code="404"' not in metrics.replace(unrouted[0], ""), metrics
        for fn, fmt, n in (
            ("RestFn", "rest-api", 1),
            ("HttpFn", "http-api", 1),
            ("UrlFn", "function-url", 2),  # its preflight included
        ):
            labels = f'function="{fn}",front="http",format="{fmt}",code="200"'
            wanted = f"rie_http_requests_total{{{labels}}} {n}"
            assert wanted in samples, metrics
        invoked = re.findall(r'rie_invocations_total\{function="(\w+)",.*\} 1', metrics)
        assert sorted(invoked) == ["HttpFn", "RestFn", "UrlFn"]
        # the start-up lines say how to reach each function
        assert "rie:   RestFn (rest-api): GET /rest/{id}, ANY /lambda-url/RestFn/..." in r.output()
    out = r.output()
    for fn in ("RestFn", "HttpFn", "UrlFn"):
        assert re.search(rf"rie summary \[{fn}\]: 1 invocations, 0 errors", out), out
        assert f"[{fn}] serving {fn}" in out


def test_the_command_lines_http_format_wins_over_the_templates(tmp_path: Path) -> None:
    flags = ("--template", str(_project(tmp_path)), "--http", "127.0.0.1:0")
    with rie(*flags, "--http-format", "http-api") as r:
        where = _front(r)
        rest = _get(where, "/rest/1")
        assert rest.status == 200 and rest.json()["version"] == "2.0"
        assert rest.json()["route"] == "GET /rest/{id}"


def test_a_configs_per_function_front_settings(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text(APP)
    config = tmp_path / "rie.toml"
    config.write_text(
        textwrap.dedent(
            """
            [defaults]
            handler = "app.handler"
            task_root = "code"

            [functions.legacy]
            http_format = "rest-api"
            routes = ["GET /legacy/{id}"]

            [functions.modern]
            http_format = "http-api"
            routes = ["ANY /modern/{path+}"]

            [functions.url]
            cors_allow_origins = ["*"]
            cors_expose_headers = ["x-trace"]
            """
        )
    )
    with rie("--config", str(config), "--http", "127.0.0.1:0") as r:
        where = _front(r)
        legacy = _get(where, "/legacy/3")
        assert legacy.status == 200 and legacy.json()["multi"] is True
        modern = _get(where, "/modern/a/b")
        assert modern.json()["version"] == "2.0" and modern.json()["params"] == {"path": "a/b"}
        url = _get(where, "/lambda-url/url/", {"Origin": "https://x.example"})
        assert url.json()["fn"] == "url" and url.json()["path"] == "/"
        assert url.header("access-control-allow-origin") == "*"
        assert url.header("access-control-expose-headers") == "x-trace"


def test_rie_invoke_against_several_functions(tmp_path: Path) -> None:
    with rie("--template", str(_project(tmp_path))) as r:

        def invoke(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "rie", "invoke", *args, "--endpoint", r.endpoint],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
            )

        ok = invoke("HttpFn", "--sample", "apigateway-http", "--tail")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(json.loads(ok.stdout)["body"])["fn"] == "HttpFn"
        assert "REPORT RequestId:" in ok.stderr and "[HttpFn]" not in ok.stderr  # a tail is bare
        unknown = invoke("Nobody")
        assert unknown.returncode == 3
        assert "ResourceNotFoundException" in unknown.stderr
        assert "this rie serves: RestFn, HttpFn, UrlFn" in unknown.stderr
        # with several functions `function` names none of them
        assert invoke().returncode == 3
        event = tmp_path / "fail.json"
        event.write_text('{"fail": true}')
        failed = invoke("RestFn", "--event", str(event))
        assert failed.returncode == 1 and json.loads(failed.stdout)["errorType"] == "ValueError"
        for kind in ("Event", "DryRun"):
            accepted = invoke("UrlFn", "--type", kind)
            assert accepted.returncode == 0, accepted.stderr


def test_two_functions_printing_at_once_keep_whole_prefixed_lines(tmp_path: Path) -> None:
    with rie("--template", str(_project(tmp_path))) as r:
        results: dict[str, Reply] = {}

        def call(name: str) -> None:
            results[name] = r.invoke({"shout": True}, name=name, timeout=60)

        threads = [threading.Thread(target=call, args=(n,)) for n in ("RestFn", "HttpFn")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert {n: rep.json() for n, rep in results.items()} == {
            "RestFn": {"done": "RestFn"},
            "HttpFn": {"done": "HttpFn"},
        }
        for name in ("RestFn", "HttpFn"):
            r.wait_for(rf"^\[{name}\] REPORT RequestId: ", 30)
    lines = [ln for ln in r.output().splitlines() if ln.startswith("[")]
    for name in ("RestFn", "HttpFn"):
        mine = [ln for ln in lines if ln.startswith(f"[{name}] ")]
        body = [ln[len(name) + 3 :] for ln in mine]
        assert [f"{name} line {i} part two" for i in range(200)] == [
            b for b in body if " line " in b and not b.startswith("x")
        ]
        assert f"{name} unfinished" in body  # the unfinished line, ended before END
        assert any(b == "x" * 30000 for b in body)
        kinds = [
            b.split(" ", 1)[0] for b in body if b.split(" ", 1)[0] in ("START", "END", "REPORT")
        ]
        assert kinds == ["START", "END", "REPORT"]
        assert body.index(f"{name} unfinished") < next(
            i for i, b in enumerate(body) if b.startswith("END ")
        )
    # no line carries two prefixes, and none is a mix of both functions
    assert not any(re.match(r"^\[\w+\] \[\w+\] ", ln) for ln in lines)
    assert not any("RestFn line" in ln and "HttpFn line" in ln for ln in lines)


def test_rie_invoke_pointed_at_the_http_front_says_so(tmp_path: Path) -> None:
    with rie("--template", str(_project(tmp_path)), "--http", "127.0.0.1:0") as r:
        host, port = _front(r)
        done = subprocess.run(
            [sys.executable, "-m", "rie", "invoke", "UrlFn", "--endpoint", f"http://{host}:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3
        assert "HTTP 404" in done.stderr and "Invoke API's address" in done.stderr


def test_a_streaming_function_url_among_several_functions(tmp_path: Path) -> None:
    streaming = REPO / "examples" / "streaming"
    template = _project(tmp_path)
    template.write_text(
        template.read_text()
        + f"""
  StreamFn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {streaming}
      FunctionUrlConfig: {{AuthType: NONE, InvokeMode: RESPONSE_STREAM}}
"""
    )
    with rie("--template", str(template), "--http", "127.0.0.1:0") as r:
        conn = http.client.HTTPConnection(*_front(r), timeout=30)
        try:
            conn.request("GET", "/lambda-url/StreamFn/?count=3")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
            first = resp.readline()  # arrives while the function still writes the others
            rest = resp.read()
        finally:
            conn.close()
        lines = (first + rest).decode().splitlines()
        assert [ln.split(",")[0] for ln in lines] == [f"line {i} of 3" for i in (1, 2, 3)]
        # the others are still buffered: the template's Api function answers as before
        assert _get(_front(r), "/rest/5").json()["params"] == {"id": "5"}


def test_a_templates_timeout_in_millis_is_api_gateways_timeout(tmp_path: Path) -> None:
    template = _project(tmp_path)
    template.write_text(
        template.read_text().replace(
            '{Path: "/rest/{id}", Method: get}',
            '{Path: "/rest/{id}", Method: get, TimeoutInMillis: 200}',
        )
    )
    with rie("--template", str(template), "--http", "127.0.0.1:0") as r:
        where = _front(r)
        late = _get(where, "/rest/1?sleep=1.5")
        assert late.status == 504 and late.json() == {"message": "Endpoint request timed out"}
        # API Gateway stopped waiting; the invocation runs to its end all the same
        request_id = r.wait_for(r"\[RestFn\] slept (\S+)", 30).group(1)
        r.wait_for(rf"\[RestFn\] REPORT RequestId: {request_id}", 30)
        assert _get(where, "/http/1?sleep=0.5").status == 200  # its own default (30 s)
