"""Several functions in one rie, from a TOML config and from a SAM template, driven through boto3."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.helpers import REPO, boto_client, rie

SAM_APP = REPO / "examples" / "sam-app"

HANDLER = """
import os
def handler(event, context):
    print("log line of", context.function_name)
    return {"fn": context.function_name, "greeting": os.environ.get("GREETING"), "event": event,
            "memory": context.memory_limit_in_mb}
"""


def write_config(tmp_path: Path) -> Path:
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(HANDLER)
    path = tmp_path / "rie.toml"
    path.write_text(
        textwrap.dedent(
            """
            [defaults]
            timeout = 3
            env = { GREETING = "default" }

            [functions.alpha]
            handler = "app.handler"
            task_root = "alpha"
            env = { GREETING = "hi" }
            routes = ["GET /alpha/{id}"]

            [functions.beta]
            handler = "app.handler"
            task_root = "beta"
            memory = 256
            max_concurrency = 2
            """
        )
    )
    return path


def test_two_functions_from_a_config_each_invoked_by_name(tmp_path: Path) -> None:
    with rie("--config", str(write_config(tmp_path))) as r:
        client = boto_client(r)
        alpha = client.invoke(FunctionName="alpha", Payload=b'{"n": 1}')
        assert json.loads(alpha["Payload"].read()) == {
            "fn": "alpha",
            "greeting": "hi",
            "event": {"n": 1},
            "memory": "3008",
        }
        beta = client.invoke(
            FunctionName="arn:aws:lambda:us-east-1:012345678912:function:beta:$LATEST",
            Payload=b"{}",
        )
        assert json.loads(beta["Payload"].read())["fn"] == "beta"
        assert (
            json.loads(client.invoke(FunctionName="beta", Payload=b"{}")["Payload"].read())[
                "memory"
            ]
            == "256"
        )
        # with several functions, `function` is not one of them
        for unknown in ("function", "gamma"):
            with pytest.raises(ClientError) as info:
                client.invoke(FunctionName=unknown, Payload=b"{}")
            assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
        # each function's lines carry its name; the tail does not
        rid = alpha["ResponseMetadata"]["RequestId"]
        r.wait_for(rf"^\[alpha\] REPORT RequestId: {rid}\t")
        r.wait_for(r"^\[alpha\] log line of alpha$")
        r.wait_for(r"^\[beta\] log line of beta$")
        tail = client.invoke(FunctionName="beta", Payload=b"{}", LogType="Tail")["LogResult"]
        import base64

        assert base64.b64decode(tail).decode().startswith("START RequestId: ")
        metrics = r.request("GET", "/metrics").body.decode()
        assert re.search(
            r'^rie_invocations_total\{function="alpha",type="RequestResponse",outcome="success"\} 1$',
            metrics,
            re.M,
        )
        assert re.search(
            r'^rie_invocations_total\{function="beta",type="RequestResponse",outcome="success"\} 3$',
            metrics,
            re.M,
        )
        assert metrics.count("# TYPE rie_invocations_total counter") == 1

        listed = client.list_functions()["Functions"]
        assert [f["FunctionName"] for f in listed] == ["alpha", "beta"]
        paged = client.list_functions(MaxItems=1)
        assert [f["FunctionName"] for f in paged["Functions"]] == ["alpha"]
        rest = client.list_functions(Marker=paged["NextMarker"])
        assert [f["FunctionName"] for f in rest["Functions"]] == ["beta"]
        conf = client.get_function_configuration(FunctionName="alpha")
        assert conf["FunctionArn"] == "arn:aws:lambda:us-east-1:012345678912:function:alpha"
        assert conf["Handler"] == "app.handler" and conf["Timeout"] == 3
        assert conf["Environment"]["Variables"] == {"GREETING": "hi"}
        assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"
        assert conf["PackageType"] == "Zip" and conf["Runtime"].startswith("python3.")
        assert conf["CodeSize"] == len(HANDLER.encode())
        got = client.get_function(FunctionName="beta")
        assert got["Configuration"]["MemorySize"] == 256
        assert got["Concurrency"]["ReservedConcurrentExecutions"] == 2
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_function(FunctionName="gamma")
    summaries = re.findall(r"rie summary \[(\w+)\]: (\d+) invocations", r.output())
    assert summaries == [("alpha", "1"), ("beta", "3")]


def test_a_single_function_keeps_the_official_name_and_unprefixed_lines(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HANDLER)
    with rie("--task-root", str(tmp_path), "--handler", "app.handler") as r:
        client = boto_client(r)
        for name in ("function", "test_function"):
            reply = client.invoke(FunctionName=name, Payload=b"{}")
            assert json.loads(reply["Payload"].read())["fn"] == "test_function"
        r.wait_for(r"^START RequestId: ")
        r.wait_for(r"^log line of test_function$")
        assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == [
            "test_function"
        ]
    assert re.search(r"^rie summary: 2 invocations", r.output(), re.M)


def test_the_example_sam_app_runs_both_functions(tmp_path: Path) -> None:
    with rie("--template", str(SAM_APP / "template.yaml")) as r:
        client = boto_client(r)
        names = [f["FunctionName"] for f in client.list_functions()["Functions"]]
        assert names == ["sam-app-hello", "ItemsFunction"]
        conf = client.get_function_configuration(FunctionName="sam-app-hello")
        assert conf["Runtime"] == "python3.12" and conf["Timeout"] == 5
        assert conf["MemorySize"] == 256
        assert conf["Environment"]["Variables"] == {
            "STAGE": "dev",  # !Ref to a parameter: its default (Globals)
            "TABLE_NAME": "ItemsTable",  # !Ref to a resource: its logical id
            "REGION": "us-east-1",  # !Sub with a pseudo parameter
            "GREETING": "Hello",
            "LOG_LEVEL": "DEBUG",  # !FindInMap
            "TABLE_ARN": "<ItemsTable.Arn>",  # !GetAtt: known only once deployed
            "VERBOSE": "true",  # !If on a condition made of !Equals
        }
        items = client.get_function_configuration(FunctionName="ItemsFunction")
        assert items["Timeout"] == 10 and items["MemorySize"] == 256
        assert [layer["Arn"] for layer in items["Layers"]] == [str(SAM_APP / "layers" / "shared")]

        event = {"pathParameters": {"name": "you"}, "requestContext": {"http": {"method": "GET"}}}
        hello = client.invoke(FunctionName="sam-app-hello", Payload=json.dumps(event))
        answer = json.loads(hello["Payload"].read())
        assert answer["statusCode"] == 200
        assert json.loads(answer["body"]) == {"message": "Hello, you!", "stage": "dev"}
        post = {"requestContext": {"http": {"method": "POST"}}, "body": '{"id": 1}'}
        created = json.loads(
            client.invoke(FunctionName="ItemsFunction", Payload=json.dumps(post))["Payload"].read()
        )
        assert created == {"statusCode": 201, "body": '{"count": 1}'}
        r.wait_for(r"^\[ItemsFunction\] REPORT RequestId: ")


def test_a_template_with_a_custom_runtime_and_a_zipped_python_function(tmp_path: Path) -> None:
    """provided.al2023 runs the code's own bootstrap (a sh + curl runtime nobody here wrote);
    a CodeUri naming a .zip runs the package."""
    import shutil
    import zipfile

    (tmp_path / "sh").mkdir()
    shutil.copy(
        REPO / "tests" / "rie" / "fixtures" / "curl_bootstrap.sh", tmp_path / "sh" / "bootstrap"
    )
    (tmp_path / "sh" / "bootstrap").chmod(0o755)
    with zipfile.ZipFile(tmp_path / "py.zip", "w") as z:
        z.writestr("app.py", HANDLER)
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """
            Transform: AWS::Serverless-2016-10-31
            Parameters:
              Size: {Type: Number, Default: 512}
            Resources:
              Shell:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: sh/
                  Handler: unused
                  Runtime: provided.al2023
                  MemorySize: !Ref Size
              Zipped:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: py.zip
                  Handler: app.handler
                  Runtime: python3.12
                  Environment: {Variables: {GREETING: !Sub '${AWS::Region}'}}
            """
        )
    )
    with rie("--template", str(tmp_path / "template.yaml")) as r:
        client = boto_client(r)
        echoed = client.invoke(FunctionName="Shell", Payload=b'{"echo": "me"}')
        assert json.loads(echoed["Payload"].read()) == {"echo": "me"}
        assert client.get_function_configuration(FunctionName="Shell")["MemorySize"] == 512
        zipped = json.loads(client.invoke(FunctionName="Zipped", Payload=b"{}")["Payload"].read())
        assert zipped["fn"] == "Zipped" and zipped["greeting"] == "us-east-1"


def _has_http_front() -> bool:
    from rie.settings.config import build_parser

    return any("--http" in action.option_strings for action in build_parser()._actions)


@pytest.mark.skipif(not _has_http_front(), reason="rie has no HTTP front (--http) in this tree")
def test_the_example_sam_app_over_its_http_routes() -> None:
    import http.client

    flags = ("--template", str(SAM_APP / "template.yaml"), "--http", "127.0.0.1:0")
    with rie(*flags, "--http-format", "http-api") as r:
        m = r.wait_for(r"HTTP front .*listening on http://([\d.]+):(\d+)")

        def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                return response.status, response.read()
            finally:
                conn.close()

        status, body = call("GET", "/hello/you")
        assert status == 200 and json.loads(body) == {"message": "Hello, you!", "stage": "dev"}
        assert call("POST", "/items", b'{"id": 1}') == (201, b'{"count": 1}')
        status, body = call("GET", "/items")
        assert status == 200 and json.loads(body) == {"items": [{"id": 1}]}
        assert call("GET", "/nowhere")[0] == 404
