"""Several functions from a file: `rie --config FILE` (TOML) and `rie --template FILE` (SAM).

Both files end as the same thing: a list of (name, settings) whose keys mirror the command line's
function flags; `derive` turns each into a checked `Config` exactly as the flags would. Parsing
stays here, at the edge: the rest of the emulator sees only configs.

Precedence, per function: a flag given on the command line, then the function's own settings,
then the file's defaults (`[defaults]`, SAM's `Globals.Function`), then environment variables and
built-in defaults. Unknown keys, wrong types and missing code are refused with the file, the
function and the key named.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from rie.settings.config import (
    RUNTIME_ENTRY,
    USER_ENV_LIMIT,
    Config,
    check_env_entry,
    check_function,
    read_env_file,
    resolve_command,
    route_format,
)
from rie.settings.errors import ConfigError, shown

Settings = dict[str, Any]
MAX_CONFIG_BYTES = 1024 * 1024  # as a CloudFormation template: a config is far smaller

# key -> (the types it takes, what to say when it has another)
KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "handler": ((str,), "a string such as app.handler"),
    "command": ((list, str), "a list of strings (or one string, split like a shell)"),
    "task_root": ((str,), "a directory, relative to the file"),
    "zip": ((str,), "a deployment package (.zip), relative to the file"),
    "runtime": ((str,), "a Lambda runtime identifier such as python3.12 or provided.al2023"),
    "description": ((str,), "a string"),
    "timeout": ((int, float), "seconds"),
    "memory": ((int,), "MB"),
    "sandbox": ((str,), '"lambda" or "off"'),
    "ephemeral_storage": ((int,), "MB, 512-10240"),
    "env": ((dict,), "a table of variables"),
    "env_file": ((str,), "a file of KEY=VALUE lines, relative to the file"),
    "routes": ((list,), 'a list of "METHOD /path" strings'),
    "layers": ((list,), "a list of layer directories, relative to the file"),
    "max_concurrency": ((int,), "a number of environments"),
    "per_environment_concurrency": ((int,), "a number of invocations"),
    "provisioned": ((int,), "a number of environments"),
    "queue_timeout": ((int, float), "seconds"),
    "idle_timeout": ((int, float), "seconds"),
    "init": ((str,), '"eager" or "lazy"'),
    "event_retries": ((int,), "0, 1 or 2"),
    "event_retry_delay": ((int, float), "seconds"),
    "event_max_age": ((int, float), "seconds"),
    # the HTTP front, as --http-format, --http-invoke-mode and the --cors-* flags
    "http_format": ((str,), '"function-url", "http-api" or "rest-api"'),
    "http_invoke_mode": ((str,), '"BUFFERED" or "RESPONSE_STREAM"'),
    "http_integration_timeout": ((int, float), "seconds"),
    "cors_allow_origins": ((list,), 'a list of origins (or ["*"])'),
    "cors_allow_methods": ((list,), 'a list of methods (or ["*"])'),
    "cors_allow_headers": ((list,), "a list of header names"),
    "cors_expose_headers": ((list,), "a list of header names"),
    "cors_max_age": ((int,), "seconds, 0-86400"),
    "cors_allow_credentials": ((bool,), "true or false"),
}
_BOOLEAN_KEYS = frozenset({"cors_allow_credentials"})
_CORS_KEYS = tuple(key for key in KEYS if key.startswith("cors_"))
# flags that, given on the command line, win over every function's own setting
_CLI_OVERRIDES = (
    "timeout",
    "memory",
    "sandbox",
    "ephemeral_storage",
    "max_concurrency",
    "per_environment_concurrency",
    "provisioned",
    "queue_timeout",
    "idle_timeout",
    "init",
    "event_retries",
    "event_retry_delay",
    "event_max_age",
)
_OTHER_RUNTIMES = {
    "nodejs": "the Node.js runtime interface client (npm install aws-lambda-ric), then "
    'command = ["npx", "aws-lambda-ric", "<handler>"]',
    "java": "the Java runtime interface client (com.amazonaws:aws-lambda-java-runtime-interface-"
    'client), then command = ["java", "-cp", "<jars>", '
    '"com.amazonaws.services.lambda.runtime.api.client.AWSLambda", "<handler>"]',
    "dotnet": "the .NET runtime support (Amazon.Lambda.RuntimeSupport) in your app, then "
    'command = ["dotnet", "<App>.dll"]',
    "ruby": "the Ruby runtime interface client (gem install aws_lambda_ric), then command = "
    '["aws_lambda_ric", "<handler>"]',
}


def load(a: argparse.Namespace, base: Config, environ: Mapping[str, str]) -> list[Config]:
    """The configs of every function in `a.config` or `a.template`, over `base` (the flags)."""
    if a.config and a.template:
        raise ConfigError("--config and --template: give one of them")
    if a.parameter_overrides and not a.template:
        raise ConfigError("--parameter-overrides is for a --template's Parameters")
    if a.config:
        path, functions = a.config, read_toml(a.config)
    else:
        from rie.settings import sam  # PyYAML is imported only for a template

        warnings = list(base.warnings)
        overrides = sam.parse_overrides(a.parameter_overrides)
        path, functions = a.template, sam.read(a.template, base, overrides, warnings)
        base = dataclasses.replace(base, warnings=tuple(warnings))
    if not functions:
        raise ConfigError(f"{path}: no functions in it")
    overrides = {key: getattr(a, key) for key in _CLI_OVERRIDES if getattr(a, key) is not None}
    overrides.update(http_overrides(a, base))
    configs = []
    seen: set[str] = set()
    for name, settings in functions:
        if name in seen:
            raise ConfigError(f"{path}: two functions are named {name!r}")
        seen.add(name)
        configs.append(derive(base, name, {**settings, **overrides}, f"{path}: function {name}"))
    return configs


def http_overrides(a: argparse.Namespace, base: Config) -> Settings:
    """The HTTP front's flags given on the command line, as settings that win over the file's."""
    out: Settings = {}
    if a.http_format is not None:
        out["http_format"] = a.http_format
    if a.http_invoke_mode is not None:
        out["http_invoke_mode"] = a.http_invoke_mode
    if a.http_integration_timeout is not None:
        out["http_integration_timeout"] = a.http_integration_timeout
    cors = {key: getattr(base, key) for key in _CORS_KEYS}
    if any(cors.values()):
        # CORS flags describe one whole configuration: given, they replace the file's
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in cors.items()})
    return out


def read_toml(path: str) -> list[tuple[str, Settings]]:
    """`[functions.NAME]` tables (and an optional `[defaults]` table every function starts from),
    with relative paths made absolute from the file's directory."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"--config {path}: larger than {MAX_CONFIG_BYTES // 1024} KB")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--config {path}: not UTF-8 text, as TOML must be ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"--config {path}: not valid TOML: nested too deeply") from None
    unknown = set(doc) - {"functions", "defaults"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}: "
            "expected [functions.NAME] tables and an optional [defaults] table"
        )
    defaults = doc.get("defaults", {})
    functions = doc.get("functions", {})
    if not isinstance(defaults, dict) or not isinstance(functions, dict):
        raise ConfigError(f"{path}: `defaults` and `functions` must be tables")
    here = os.path.dirname(os.path.abspath(path))
    out: list[tuple[str, Settings]] = []
    check_keys(defaults, f"{path}: [defaults]")
    for name, table in functions.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: functions.{name} must be a table")
        check_keys(table, f"{path}: [functions.{name}]")
        settings = {**defaults, **table}
        if "env" in defaults and "env" in table:
            settings["env"] = {**defaults["env"], **table["env"]}
        out.append((name, relative_to(settings, here)))
    return out


def check_keys(settings: Mapping[str, object], origin: str) -> None:
    for key, value in settings.items():
        if key not in KEYS:
            raise ConfigError(
                f"{origin}: unknown key {shown(key)} (known: {', '.join(sorted(KEYS))})"
            )
        kinds, meaning = KEYS[key]
        if (isinstance(value, bool) and key not in _BOOLEAN_KEYS) or not isinstance(value, kinds):
            raise ConfigError(f"{origin}: {key} must be {meaning}, got {shown(value)}")


def relative_to(settings: Settings, directory: str) -> Settings:
    """Paths in the settings made absolute from `directory` (the file's)."""
    out = dict(settings)
    for key in ("task_root", "zip", "env_file"):
        if key in out:
            out[key] = os.path.normpath(os.path.join(directory, os.path.expanduser(out[key])))
    if "layers" in out:
        out["layers"] = [
            os.path.normpath(os.path.join(directory, os.path.expanduser(str(layer))))
            for layer in out["layers"]
        ]
    if "task_root" not in out and "zip" not in out:
        out["task_root"] = directory
    return out


def derive(base: Config, name: str, s: Settings, origin: str) -> Config:
    """One function's Config: `base` (the command line) with its settings applied and checked."""
    check_keys(s, origin)
    if "zip" in s:
        if "task_root" in s and s["task_root"] != os.path.dirname(s["zip"]):
            raise ConfigError(f"{origin}: zip and task_root: give one, the zip is the task root")
        from rie.settings.package import unpack

        task_root = unpack(s["zip"])
    else:
        task_root = s["task_root"]
        if not os.path.isdir(task_root):
            raise ConfigError(f"{origin}: task_root {task_root} is not a directory")
    handler = s.get("handler", "")
    runtime = s.get("runtime", "")
    command_value = s.get("command", [])
    command = shlex.split(command_value) if isinstance(command_value, str) else command_value
    if not all(isinstance(part, str) for part in command):
        raise ConfigError(f"{origin}: command must be a list of strings")
    if command and not os.path.isabs(command[0]) and os.sep in command[0]:
        command = [os.path.join(task_root, command[0]), *command[1:]]
    warnings = list(base.warnings)
    if not command and runtime:
        command = list(runtime_command(runtime, task_root, origin, warnings))
    try:
        resolved = resolve_command(command, handler, task_root)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None

    user_env: dict[str, str] = {}
    if "env_file" in s:
        user_env.update(read_env_file(s["env_file"]))
    for key, value in s.get("env", {}).items():
        if isinstance(value, dict | list) or value is None:
            raise ConfigError(f"{origin}: env.{key} must be a string, a number or a boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{origin}: env.{key} must be a finite number, got {value}")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        check_env_entry(str(key), text, f"{origin}: env")
        user_env[str(key)] = text
    user_env.update(base.user_env)  # the command line's --env wins
    if sum(len(k) + len(v) for k, v in user_env.items()) > USER_ENV_LIMIT:
        warnings.append(f"{name}: the function's own variables exceed Lambda's 4 KB limit")
    routes = s.get("routes", [])
    if not all(isinstance(r, str) and r.strip() for r in routes):
        raise ConfigError(f"{origin}: routes must be strings such as 'GET /hello/{{name}}'")
    if routes and "http_format" not in s:
        # routes mean API Gateway: an HTTP API unless a format is given
        s = {**s, "http_format": route_format(None, routes, f"{origin}: routes")}
    else:
        route_format(s.get("http_format", base.http_format), routes, f"{origin}: routes")
    layers = tuple(s.get("layers", []))
    for layer in layers:
        if not os.path.isdir(layer):
            raise ConfigError(f"{origin}: layer {layer} is not a directory")
    init = s.get("init")
    if init not in (None, "eager", "lazy"):
        raise ConfigError(f"{origin}: init must be 'eager' or 'lazy', got {init!r}")

    def number(key: str, default: float) -> float:
        return float(s[key]) if key in s else default

    http = http_settings(base, s, origin)
    cors_given = any(key.startswith("cors_") for key in s) or "http_invoke_mode" in s
    if cors_given and http["http_format"] != "function-url":
        warnings.append(f"{origin}: cors_* and http_invoke_mode apply to function-url only")

    config = dataclasses.replace(
        base,
        command=resolved,
        handler=handler,
        function_name=name,
        task_root=task_root,
        runtime=runtime,
        description=s.get("description", ""),
        timeout_s=number("timeout", base.timeout_s),
        memory_mb=int(s.get("memory", base.memory_mb)),
        sandbox=str(s.get("sandbox", base.sandbox)),
        ephemeral_storage_mb=int(s.get("ephemeral_storage", base.ephemeral_storage_mb)),
        user_env=user_env,
        routes=tuple(r.strip() for r in routes),
        layers=layers,
        init_eagerly=base.init_eagerly if init is None else init == "eager",
        max_concurrency=int(s.get("max_concurrency", base.max_concurrency)),
        per_env_concurrency=int(s.get("per_environment_concurrency", base.per_env_concurrency)),
        provisioned=int(s.get("provisioned", base.provisioned)),
        queue_timeout_s=number("queue_timeout", base.queue_timeout_s),
        idle_timeout_s=number("idle_timeout", base.idle_timeout_s),
        event_retries=int(s.get("event_retries", base.event_retries)),
        event_retry_delay_s=number("event_retry_delay", base.event_retry_delay_s),
        event_max_age_s=number("event_max_age", base.event_max_age_s),
        warnings=tuple(warnings),
        **http,
    )
    try:
        return check_function(config)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def http_settings(base: Config, s: Settings, origin: str) -> Settings:
    """The HTTP front's fields of one function's Config, from its settings over the flags'."""
    from rie.settings.config import HTTP_FORMATS, INVOKE_MODES

    fmt = s.get("http_format", base.http_format)
    if fmt not in HTTP_FORMATS:
        raise ConfigError(f"{origin}: http_format must be one of {', '.join(HTTP_FORMATS)}")
    mode = str(s.get("http_invoke_mode", base.http_invoke_mode)).upper()
    if mode not in INVOKE_MODES:
        raise ConfigError(f"{origin}: http_invoke_mode must be one of {', '.join(INVOKE_MODES)}")
    timeout = s.get("http_integration_timeout", base.http_integration_timeout_s)
    if timeout is not None and not 0 < timeout <= 900:
        raise ConfigError(f"{origin}: http_integration_timeout must be more than 0, at most 900")
    lists = {}
    for key in (
        "cors_allow_origins",
        "cors_allow_methods",
        "cors_allow_headers",
        "cors_expose_headers",
    ):
        values = s.get(key, getattr(base, key))
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise ConfigError(f"{origin}: {key} must be a list of non-empty strings")
        lists[key] = tuple(v.strip() for v in values)
    lists["cors_allow_methods"] = tuple(m.upper() for m in lists["cors_allow_methods"])
    max_age = int(s.get("cors_max_age", base.cors_max_age))
    if not 0 <= max_age <= 86400:
        raise ConfigError(f"{origin}: cors_max_age must be 0-86400 seconds")
    return {
        "http_format": fmt,
        "http_invoke_mode": mode,
        "http_integration_timeout_s": None if timeout is None else float(timeout),
        "cors_max_age": max_age,
        "cors_allow_credentials": bool(
            s.get("cors_allow_credentials", base.cors_allow_credentials)
        ),
        **lists,
    }


def runtime_command(runtime: str, task_root: str, origin: str, warnings: list[str]) -> list[str]:
    """What runs a managed runtime here: `python3.x` this project's runtime client (on this
    interpreter), `provided.*` the code's `bootstrap`; anything else needs its own client."""
    if runtime.startswith("python3."):
        here = f"python{sys.version_info.major}.{sys.version_info.minor}"
        if runtime != here:
            warnings.append(f"{origin}: runtime {runtime} runs on this interpreter ({here})")
        return [sys.executable, "-c", RUNTIME_ENTRY]
    if runtime.startswith("provided"):
        bootstrap = os.path.join(task_root, "bootstrap")
        if not (os.path.isfile(bootstrap) and os.access(bootstrap, os.X_OK)):
            raise ConfigError(
                f"{origin}: runtime {runtime} runs the code's own `bootstrap`, and there is no "
                f"executable {bootstrap} (build it first, e.g. `cargo lambda build` or "
                "`GOOS=linux go build -o bootstrap`)"
            )
        return [bootstrap]
    family = runtime.rstrip("0123456789.x")
    how = _OTHER_RUNTIMES.get(family, "that language's Lambda runtime interface client")
    raise ConfigError(
        f"{origin}: rie runs python3.x functions with its own runtime client and provided.* "
        f"functions with their bootstrap; for {runtime} install {how}, and give that command "
        "for the function in a --config file"
    )
