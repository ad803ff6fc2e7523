"""Functions from a TOML config or a SAM template: keys, precedence, runtimes and intrinsics."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from rie.settings.config import RUNTIME_ENTRY, Config, load
from rie.settings.errors import ConfigError
from rie.settings.load import load_all
from rie.settings.sam import functions_of, parse


def toml(tmp_path: Path, text: str) -> str:
    (tmp_path / "code").mkdir(exist_ok=True)
    path = tmp_path / "rie.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_keys_mirror_the_flags_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "layer").mkdir()
    path = toml(
        tmp_path,
        """
        [functions.one]
        handler = "app.handler"
        task_root = "code"
        timeout = 2.5
        memory = 512
        max_concurrency = 3
        per_environment_concurrency = 2
        provisioned = 1
        queue_timeout = 1
        idle_timeout = 0
        init = "eager"
        event_retries = 0
        env = { A = "1", B = 2, C = true }
        routes = ["GET /one", "ANY /one/{proxy+}"]
        layers = ["layer"]
        description = "the first"
        """,
    )
    (c,) = load_all(["--config", path], {})
    assert c.function_name == "one" and c.task_root == str(tmp_path / "code")
    assert c.command == (sys.executable, "-c", RUNTIME_ENTRY) and c.handler == "app.handler"
    assert (c.timeout_s, c.memory_mb, c.max_concurrency, c.per_env_concurrency) == (2.5, 512, 3, 2)
    assert (c.provisioned, c.queue_timeout_s, c.idle_timeout_s, c.event_retries) == (1, 1, 0, 0)
    assert c.init_eagerly and c.description == "the first"
    assert dict(c.user_env) == {"A": "1", "B": "2", "C": "true"}
    assert c.routes == ("GET /one", "ANY /one/{proxy+}")
    assert c.layers == (str(tmp_path / "layer"),)


def test_command_line_flags_win_over_the_file_which_wins_over_variables(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        """
        [defaults]
        timeout = 3
        [functions.a]
        handler = "app.handler"
        task_root = "code"
        [functions.b]
        handler = "app.handler"
        task_root = "code"
        timeout = 4
        env = { K = "file" }
        """,
    )
    env = {"AWS_LAMBDA_FUNCTION_TIMEOUT": "9"}
    a, b = load_all(["--config", path], env)
    assert (a.timeout_s, b.timeout_s) == (3, 4)
    a, b = load_all(["--config", path, "--timeout", "7", "--env", "K=cli"], env)
    assert (a.timeout_s, b.timeout_s) == (7, 7) and b.user_env["K"] == "cli"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[functions.a]\nhandler = "app.handler"\ntask_root = "code"\ntimeoutt = 3\n',
            "unknown key 'timeoutt'",
        ),
        (
            '[functions.a]\nhandler = "app.handler"\ntask_root = "code"\ntimeout = "3"\n',
            "timeout must be seconds",
        ),
        ('[functions.a]\nhandler = "app.handler"\ntask_root = "nowhere"\n', "is not a directory"),
        (
            '[functions.a]\nhandler = "app.handler"\ntask_root = "code"\ntimeout = 901\n',
            "at most 900",
        ),
        ('[function.a]\nhandler = "x.y"\n', "unknown top-level key(s) function"),
        ("[functions.a\n", "not valid TOML"),
        ('[functions."a b"]\nhandler = "app.handler"\ntask_root = "code"\n', "letters, digits"),
        ("", "no functions"),
        ('[functions.a]\ntask_root = "code"\n', "no bootstrap"),
    ],
)
def test_bad_files_are_refused_with_the_function_and_key_named(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_all(["--config", toml(tmp_path, body)], {})
    assert message in str(info.value)


def test_flags_that_name_one_function_are_refused_with_a_file(tmp_path: Path) -> None:
    path = toml(tmp_path, '[functions.a]\nhandler = "app.handler"\ntask_root = "code"\n')
    for flags in (["--handler", "x.y"], ["--function-name", "x"], ["--", "/bin/true"]):
        with pytest.raises(ConfigError, match="per function in the file"):
            load_all(["--config", path, *flags], {})
    with pytest.raises(ConfigError, match="use load_all"):
        load(["--config", path], {})


def test_runtimes(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    path = toml(tmp_path, '[functions.a]\nruntime = "provided.al2023"\ntask_root = "code"\n')
    with pytest.raises(ConfigError, match=r"no executable .*bootstrap"):
        load_all(["--config", path], {})
    (code / "bootstrap").write_text("#!/bin/sh\n")
    (code / "bootstrap").chmod(0o755)
    (c,) = load_all(["--config", path], {})
    assert c.command == (str(code / "bootstrap"),) and c.runtime == "provided.al2023"
    path = toml(
        tmp_path, '[functions.a]\nruntime = "nodejs20.x"\nhandler = "i.h"\ntask_root = "code"\n'
    )
    with pytest.raises(ConfigError, match=r"for nodejs20.x install .*aws-lambda-ric"):
        load_all(["--config", path], {})
    # a command given explicitly is used whatever the runtime
    path = toml(
        tmp_path,
        '[functions.a]\nruntime = "nodejs20.x"\ncommand = "./bootstrap --x"\ntask_root = "code"\n',
    )
    (c,) = load_all(["--config", path], {})
    assert c.command == (str(code / "bootstrap"), "--x")


BASE = Config(command=("/bin/true",), handler="")

EVERY_TAG = """
Parameters:
  Env: {Type: String, Default: dev}
  Names: {Type: CommaDelimitedList, Default: "a, b"}
  Size: {Type: Number, Default: "512"}
Conditions:
  IsDev: !Equals [!Ref Env, dev]
  NotDev: !Not [!Condition IsDev]
  Both: !And [!Condition IsDev, !Equals [1, 1]]
  Either: !Or [!Condition NotDev, !Condition IsDev]
Mappings:
  M: {dev: {Level: DEBUG}}
Globals:
  Function:
    Runtime: python3.12
    Timeout: 7
    Environment: {Variables: {FROM_GLOBALS: g, OVERRIDDEN: g}}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: code
      Handler: app.handler
      MemorySize: !Ref Size
      Description: !Join ['-', [!Ref Env, !Select [1, !Ref Names]]]
      Environment:
        Variables:
          OVERRIDDEN: f
          REF: !Ref Env
          SUB: !Sub '${Env}-${AWS::Region}-${AWS::AccountId}-${!Literal}'
          SUB_VARS: !Sub ['${A}.${Fn.Arn}', {A: !Ref Env}]
          GETATT: !GetAtt Other.Arn
          JOIN: !Join [',', !Split ['|', 'x|y']]
          IF: !If [IsDev, yes-dev, no-dev]
          FIND: !FindInMap [M, !Ref Env, Level]
          IMPORT: !ImportValue shared-stack-Output
          B64: !Base64 hi
          AZ: !Select [0, !GetAZs '']
          CIDR: !Join [',', !Cidr ['10.0.0.0/16', 2, 8]]
          BOTH: !If [Both, 'true', 'false']
          EITHER: !If [Either, 'true', 'false']
          GONE: !If [NotDev, here, !Ref AWS::NoValue]
          PARTITION: !Ref AWS::Partition
      Events:
        Rest: {Type: Api, Properties: {Path: '/rest/{id}', Method: any}}
        Http: {Type: HttpApi, Properties: {Path: /http, Method: post}}
        CatchAll: {Type: HttpApi}
        Schedule: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
  Skipped:
    Type: AWS::Serverless::Function
    Condition: NotDev
    Properties: {CodeUri: code, Handler: app.handler}
  Other:
    Type: AWS::SQS::Queue
"""


def test_every_short_tag_parses_and_intrinsics_resolve_locally(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    [(name, settings)] = functions_of(parse(EVERY_TAG, "t"), str(tmp_path), BASE, "t")
    assert name == "Fn"
    assert settings["task_root"] == str(tmp_path / "code")
    assert settings["memory"] == 512 and settings["timeout"] == 7
    assert settings["description"] == "dev-b"
    assert settings["env"] == {
        "FROM_GLOBALS": "g",
        "OVERRIDDEN": "f",
        "REF": "dev",
        "SUB": "dev-us-east-1-012345678912-${Literal}",
        "SUB_VARS": "dev.<Fn.Arn>",
        "GETATT": "<Other.Arn>",
        "JOIN": "x,y",
        "IF": "yes-dev",
        "FIND": "DEBUG",
        "IMPORT": "<import shared-stack-Output>",
        "B64": "aGk=",
        "AZ": "us-east-1a",
        "CIDR": "",
        "BOTH": "true",
        "EITHER": "true",
        "PARTITION": "aws",
    }
    assert settings["routes"] == ["ANY /rest/{id}", "POST /http", "ANY /{proxy+}"]


def test_template_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    cases = {
        "Resources: {F: {Type: AWS::Serverless::Function, Properties: {CodeUri: s3://b/k.zip, Handler: a.b}}}": "only a local directory",
        "Resources: {F: {Type: AWS::Serverless::Function, Properties: {PackageType: Image}}}": "an Image function",
        "Resources: {F: {Type: AWS::Serverless::Function, Properties: {CodeUri: code, Handler: !Ref Nope}}}": "no parameter or resource named 'Nope'",
        "Resources: !Bogus x": "unknown CloudFormation tag !Bogus",
        "[1, 2": "not a valid template",
    }
    for text, message in cases.items():
        path = tmp_path / "template.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_all(["--template", str(path)], {})
        assert message in str(info.value), text
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources: {F: {Type: AWS::Serverless::Function, "
        "Properties: {CodeUri: code, Handler: a.h, Runtime: java21}}}"
    )
    with pytest.raises(ConfigError, match="for java21 install the Java runtime interface client"):
        load_all(["--template", str(path)], {})
    assert os.path.isdir(tmp_path / "code")


def test_parameters_without_default_take_overrides_or_warn(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """
            Parameters:
              Table: {Type: String}
              Names: {Type: CommaDelimitedList, Default: "a,b"}
              Unused: {Type: String}
            Resources:
              F:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: code
                  Handler: app.handler
                  Environment:
                    Variables:
                      TABLE: !Ref Table
                      SECOND: !Select [1, !Ref Names]
            """
        )
    )
    (c,) = load_all(["--template", str(path)], {})
    assert c.user_env["TABLE"] == "" and c.user_env["SECOND"] == "b"
    assert any("parameter Table has no Default" in w for w in c.warnings)
    assert not any("Unused" in w for w in c.warnings)
    (c,) = load_all(
        [
            "--template", str(path),
            "--parameter-overrides", "Table=items 'Names=x, y'",
            "--parameter-overrides", "ParameterKey=Unused,ParameterValue=1",
        ],
        {},
    )  # fmt: skip
    assert (c.user_env["TABLE"], c.user_env["SECOND"]) == ("items", "y") and not c.warnings
    with pytest.raises(ConfigError, match="no parameter Nope"):
        load_all(["--template", str(path), "--parameter-overrides", "Nope=1"], {})
    with pytest.raises(ConfigError, match="is for a --template"):
        load_all(["--config", str(path), "--parameter-overrides", "Table=1"], {})
