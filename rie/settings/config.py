"""One frozen configuration per function, built from CLI flags over environment over defaults.

Everything is validated here, at start-up, so that the rest of the emulator can trust its config.
The flags of the official emulator are accepted as they are (so `rie` is a drop-in), beside
readable ones of our own.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rie.settings.errors import ConfigError

TYPE_CHECKING = False  # config is read before anything else: typing is not worth importing here
if TYPE_CHECKING:
    from typing import Any

DEFAULT_FUNCTION_NAME = "test_function"
DEFAULT_ACCOUNT = "012345678912"
DEFAULT_TIMEOUT_S = 300.0  # the official emulator's default; Lambda's console default is 3 s
DEFAULT_MEMORY_MB = 3008
DEFAULT_MAX_CONCURRENCY = 10
# Lambda's default concurrency for a whole account: one environment is a process here, and more
# than this many would be a machine's worth of them
MAX_CONCURRENCY = 1000
# Lambda Managed Instances' PerExecutionEnvironmentMaxConcurrency, at most
MAX_PER_ENV_CONCURRENCY = 1600
DEFAULT_IDLE_TIMEOUT_S = 600.0
INIT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 900.0
USER_ENV_LIMIT = 4096
# this project's Python runtime client; `-c` rather than `-m runtime`, which costs runpy's imports
# `-c` puts the working directory (the task root) first on sys.path, where a function's own
# `runtime.py` would be found in place of this client: it is taken off before the import (as
# `python -P` would; the client puts the task root back, after its own import, for the handler)
RUNTIME_ENTRY = (
    "import sys; sys.path[0] or sys.path.pop(0); "
    "from runtime.loop import main; sys.exit(main(sys.argv))"
)
BOOTSTRAP_CANDIDATES = ("/var/task/bootstrap", "/opt/bootstrap", "/var/runtime/bootstrap")


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    command: tuple[str, ...]
    handler: str
    function_name: str = DEFAULT_FUNCTION_NAME
    function_version: str = "$LATEST"
    region: str = "us-east-1"
    account_id: str = DEFAULT_ACCOUNT
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    task_root: str = "/var/task"
    user_env: Mapping[str, str] = field(default_factory=dict)
    invoke_address: Address = Address("127.0.0.1", 8080)
    runtime_api_address: Address = Address("127.0.0.1", 9001)
    runtime_api_port_explicit: bool = False
    log_level: str = "info"
    init_eagerly: bool = False
    init_timeout_s: float = INIT_TIMEOUT_S
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    per_env_concurrency: int = 1
    provisioned: int = 0
    queue_timeout_s: float = 0.0
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    event_retries: int = 2
    event_retry_delay_s: float = 1.0
    event_max_age_s: float = 21600.0
    event_failure_file: str | None = None
    shutdown_timeout_s: float = 5.0
    request_head_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    # extensions (rie/sandbox/extensions.py); `layers` (rie/settings/layers.py) is the function's /opt
    extensions_dir: str | None = None  # None: /opt/extensions when it exists
    extension_paths: tuple[str, ...] = ()  # found at start-up: the extensions every env starts
    warnings: tuple[str, ...] = ()
    # several functions, the daily loop (rie/settings/project.py fills these from --config / --template)
    routes: tuple[str, ...] = ()  # "METHOD /path/{param}" routes on the HTTP front
    layers: tuple[str, ...] = ()  # local layer directories, in order
    runtime: str = ""  # a managed runtime's identifier (python3.12, provided.al2023), if known
    description: str = ""
    watch: bool = False  # recycle the environments when the code changes
    # one environment whose runtime rie does not start (rie/sandbox/external.py)
    external_runtime: bool = False
    external_runtime_env: str | None = None  # where to write the variables that runtime needs
    # the HTTP front (Function URL / API Gateway); `routes` above and the rest are per function
    http_address: Address | None = None
    dashboard_address: Address | None = None  # the emulator's web dashboard (rie/fronts/dashboard)
    http_format: str = "function-url"
    http_invoke_mode: str = "BUFFERED"
    http_integration_timeout_s: float | None = None  # None: API Gateway's own (29 s / 30 s)
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_methods: tuple[str, ...] = ()
    cors_allow_headers: tuple[str, ...] = ()
    cors_expose_headers: tuple[str, ...] = ()
    cors_max_age: int = 0
    cors_allow_credentials: bool = False
    # Lambda's resource model (rie/sandbox/limits.py): "lambda" enforces what the machine allows,
    # "off" none of it
    sandbox: str = "lambda"
    ephemeral_storage_mb: int = 512

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def runtime_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The variables every environment's runtime gets (per-environment ones are added later).

        `base` is the emulator's own environment: like the official emulator we pass it through,
        so PATH, HOME and the user's own variables reach the function.
        """
        env = {k: v for k, v in base.items() if k != "AWS_LAMBDA_RUNTIME_API"}
        env.update(
            {
                "LAMBDA_TASK_ROOT": self.task_root,
                "LAMBDA_RUNTIME_DIR": base.get("LAMBDA_RUNTIME_DIR", "/var/runtime"),
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": self.function_version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group_name,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": base.get("AWS_DEFAULT_REGION", self.region),
                "TZ": ":UTC",
            }
        )
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.setdefault(key, "")
        if self.handler:
            env["_HANDLER"] = self.handler
        if self.per_env_concurrency > 1:
            env["AWS_LAMBDA_MAX_CONCURRENCY"] = str(self.per_env_concurrency)
        env.update(self.user_env)
        return env


def parse_address(text: str, flag: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{flag}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    if host == "localhost":
        host = "127.0.0.1"
    return Address(host, int(port))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_can_listen(host: str, flag: str) -> None:
    """Refuse at start-up a loopback address this machine cannot listen on (e.g. ::1 without
    IPv6), rather than failing every environment's start later."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except OSError as exc:
        raise ConfigError(
            f"{flag}: cannot listen on {host}: {exc.strerror or exc}; "
            "use 127.0.0.1:PORT or another loopback address this machine has"
        ) from None


def check_env_entry(key: str, value: str, origin: str) -> None:
    """A variable a process can be given: a name without `=`, NUL or white space, a value
    without NUL (execve cannot pass either)."""
    if not key or "=" in key or "\0" in key or any(c.isspace() for c in key):
        raise ConfigError(f"{origin}: {key!r} cannot be a variable's name")
    if "\0" in value:
        raise ConfigError(f"{origin}: the value of {key} has a NUL character")


def parse_env_pairs(pairs: Sequence[str], origin: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")  # values may themselves contain '='
        if not sep or not key or any(c.isspace() for c in key):
            raise ConfigError(f"{origin}: expected KEY=VALUE, got {pair!r}")
        check_env_entry(key, value, origin)
        env[key] = value
    return env


def read_env_file(path: str) -> dict[str, str]:
    """Docker's env-file format: KEY=VALUE lines, `#` comments, blank lines; no quote handling."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except OSError as exc:
        raise ConfigError(f"--env-file: cannot read {path}: {exc.strerror}") from None
    pairs = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return parse_env_pairs(pairs, f"--env-file {path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rie",
        description="Run a Lambda function's bootstrap behind the Lambda Runtime API and Invoke API.",
        usage="rie [OPTIONS] [--] [COMMAND [ARGS...]]",
        epilog="Also, as the first word only: `rie event list|NAME` prints a sample event, "
        "`rie invoke [FUNCTION] ...` invokes a running rie, `rie tune ...` chooses a memory size "
        "(see `rie event -h`, `rie invoke -h`, `rie tune -h`).",
    )
    official = p.add_argument_group("flags of the official emulator")
    official.add_argument(
        "--runtime-interface-emulator-address",
        metavar="HOST:PORT",
        help="where the Invoke API listens (default 127.0.0.1:8080; the official emulator binds 0.0.0.0)",
    )
    official.add_argument(
        "--runtime-api-address",
        metavar="HOST:PORT",
        help="the first environment's Runtime API, always on loopback: 127.x.y.z:PORT or [::1]:PORT; port 0 for a free one (default 127.0.0.1:9001)",
    )
    official.add_argument(
        "--log-level", default=None, help="debug, info, warn or error (default info)"
    )
    fn = p.add_argument_group("the function")
    fn.add_argument(
        "--handler", help="handler string, e.g. app.handler (default: _HANDLER, or the last ARG)"
    )
    fn.add_argument(
        "--timeout",
        type=float,
        help="seconds, up to 900 (default AWS_LAMBDA_FUNCTION_TIMEOUT or 300)",
    )
    fn.add_argument(
        "--memory", type=int, help="MB, 128-10240 (default AWS_LAMBDA_FUNCTION_MEMORY_SIZE or 3008)"
    )
    fn.add_argument(
        "--sandbox",
        choices=("lambda", "off"),
        help="enforce Lambda's resource model (memory, CPU by memory, /tmp, read-only code, "
        "limits) as far as this machine allows, or not at all (default RIE_SANDBOX or lambda)",
    )
    fn.add_argument(
        "--ephemeral-storage",
        type=int,
        metavar="MB",
        help="the function's /tmp, 512-10240 MB (default 512)",
    )
    fn.add_argument("--function-name", help="(default AWS_LAMBDA_FUNCTION_NAME or test_function)")
    fn.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="a variable for the function (repeatable)",
    )
    fn.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="KEY=VALUE lines (repeatable)",
    )
    fn.add_argument(
        "--task-root",
        help="the function's code directory (default LAMBDA_TASK_ROOT, /var/task, or .)",
    )
    fn.add_argument(
        "--init",
        choices=("eager", "lazy"),
        help="init at start-up or at the first invoke (default lazy)",
    )
    sc = p.add_argument_group("scaling")
    sc.add_argument(
        "--max-concurrency",
        type=int,
        help=f"environments at most, like reserved concurrency, 1-{MAX_CONCURRENCY} "
        f"(default {DEFAULT_MAX_CONCURRENCY})",
    )
    sc.add_argument(
        "--per-environment-concurrency",
        type=int,
        help=f"invocations one environment takes at once, 1-{MAX_PER_ENV_CONCURRENCY} (default 1)",
    )
    sc.add_argument(
        "--provisioned", type=int, help="environments kept initialised ahead of time (default 0)"
    )
    sc.add_argument(
        "--queue-timeout",
        type=float,
        help="seconds a synchronous invoke waits for a free environment before 429 (default 0)",
    )
    sc.add_argument(
        "--idle-timeout",
        type=float,
        help=f"seconds before an idle environment retires (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0 never)",
    )
    ev = p.add_argument_group("Event invocations")
    ev.add_argument("--event-retries", type=int, help="retries after a function error (default 2)")
    ev.add_argument(
        "--event-retry-delay",
        type=float,
        help="seconds before the first retry; doubles each time (default 1)",
    )
    ev.add_argument(
        "--event-max-age", type=float, help="seconds an event may wait in the queue (default 21600)"
    )
    ev.add_argument(
        "--event-failure-file", metavar="FILE", help="JSON lines file for on-failure records"
    )
    ex = p.add_argument_group("extensions and layers")
    ex.add_argument(
        "--layer",
        action="append",
        default=[],
        metavar="DIR|ZIP",
        help="a layer, as it would be unpacked in /opt (repeatable, at most 5, in order)",
    )
    ex.add_argument(
        "--extensions-dir",
        metavar="DIR",
        help="external extensions to start in each environment (default /opt/extensions if it exists)",
    )
    _add_http_flags(p)
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        help="seconds in-flight invocations get on SIGTERM (default 5)",
    )
    p.add_argument(
        "--request-head-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a client has to send a whole request head before the connection is closed (default 10)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds an idle keep-alive connection is kept open (default 75)",
    )
    loop = p.add_argument_group("developing locally")
    loop.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of functions ([functions.NAME] tables): several functions in one rie",
    )
    loop.add_argument(
        "--template",
        metavar="FILE",
        help="a SAM template: every AWS::Serverless::Function in it (needs PyYAML)",
    )
    loop.add_argument(
        "--parameter-overrides",
        action="append",
        default=[],
        metavar="'KEY=VALUE ...'",
        help="values for the template's Parameters, as `sam local` takes them (repeatable)",
    )
    loop.add_argument(
        "--zip",
        metavar="FILE",
        help="run a deployment package as uploaded (unpacked into a temporary task root)",
    )
    loop.add_argument(
        "--watch",
        action="store_true",
        help="recycle a function's environments when its code changes (needs watchfiles)",
    )
    loop.add_argument(
        "--external-runtime",
        action="store_true",
        help="start no runtime: one environment waits for a runtime started elsewhere (a "
        "container, a debugger) to call `next` on --runtime-api-address; prints the variables "
        "to start it with",
    )
    loop.add_argument(
        "--external-runtime-env",
        metavar="FILE",
        help="with --external-runtime (implied): write those variables to FILE as KEY=VALUE "
        "lines (docker --env-file, an IDE's env file)",
    )
    loop.add_argument(
        "--dashboard",
        metavar="[HOST:]PORT",
        help="serve a live web dashboard here: functions, environments, invocations with their "
        "logs, charts, an invoke panel (loopback unless a host is given)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the bootstrap and its arguments")
    return p


HTTP_FORMATS = ("function-url", "http-api", "rest-api")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")


def _add_http_flags(p: argparse.ArgumentParser) -> None:
    http = p.add_argument_group("HTTP front (Function URL, API Gateway)")
    http.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        help="serve plain HTTP requests to the functions here (loopback unless a host is given; "
        "with several functions, /lambda-url/NAME/... reaches NAME)",
    )
    http.add_argument(
        "--http-format",
        choices=HTTP_FORMATS,
        help="the integration whose events and answers to emulate (default function-url)",
    )
    http.add_argument(
        "--http-invoke-mode",
        choices=INVOKE_MODES,
        help="the Function URL's InvokeMode (default BUFFERED)",
    )
    http.add_argument(
        "--http-integration-timeout",
        type=float,
        metavar="SECONDS",
        help="API Gateway's integration timeout (default 29 for rest-api, 30 for http-api)",
    )
    http.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="'METHOD /path'",
        help="e.g. 'GET /items/{id}', 'ANY /files/{path+}' (repeatable; default: every request)",
    )
    http.add_argument(
        "--cors-allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="or * (repeatable)",
    )
    http.add_argument("--cors-allow-methods", metavar="LIST", help="e.g. GET,POST or *")
    http.add_argument("--cors-allow-headers", metavar="LIST", help="e.g. content-type,x-api-key")
    http.add_argument("--cors-expose-headers", metavar="LIST")
    http.add_argument("--cors-max-age", type=int, metavar="SECONDS", help="0-86400 (default 0)")
    http.add_argument("--cors-allow-credentials", action="store_true")


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def route_format(fmt: str | None, routes: Sequence[str], origin: str) -> str:
    """Check the routes (ValueError's reason as a ConfigError naming `origin`) and give the HTTP
    front's format: routes mean API Gateway, so without a format given they select http-api; a
    Function URL has no routes, and so no path parameters to give its events."""
    if not routes:
        return fmt or "function-url"
    from rie.settings.routes import parse_route  # pure and stdlib-only; loaded only when used

    parsed = []
    for route in routes:
        try:
            parsed.append(parse_route(route))
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    if fmt is None:
        return "http-api"
    if fmt == "function-url":
        for parsed_route in parsed:
            if any(seg.startswith("{") for seg in parsed_route.segments):
                raise ConfigError(
                    f"{origin}: route {parsed_route.key!r} has path parameters, which a Function URL "
                    "(http format function-url) does not give: use http-api or rest-api"
                )
    return fmt


def _loopback_unless_named(text: str, flag: str) -> Address:
    """`[HOST:]PORT`: loopback unless a host is named."""
    text = text if ":" in text else f"127.0.0.1:{text}"
    if text.startswith(":"):
        text = "127.0.0.1" + text
    return parse_address(text, flag)


def _http_settings(a: argparse.Namespace, warnings: list[str]) -> dict[str, Any]:
    """The HTTP front's fields of Config, validated; flags that will have no effect are warned of."""
    address = None
    if a.http is not None:
        address = _loopback_unless_named(a.http, "--http")
    routes = tuple(a.route)
    fmt = route_format(a.http_format, routes, "--route")
    if a.http_integration_timeout is not None and not 0 < a.http_integration_timeout <= 900:
        raise ConfigError("--http-integration-timeout must be more than 0 and at most 900")
    max_age = a.cors_max_age or 0
    if not 0 <= max_age <= 86400:
        raise ConfigError("--cors-max-age must be 0-86400 seconds")
    cors_given = bool(
        a.cors_allow_origin
        or a.cors_allow_methods
        or a.cors_allow_headers
        or a.cors_expose_headers
        or max_age
        or a.cors_allow_credentials
    )
    if address is None and (routes or a.http_format or a.http_invoke_mode or cors_given):
        warnings.append("the HTTP front's flags have no effect without --http")
    if fmt != "function-url" and (cors_given or a.http_invoke_mode == "RESPONSE_STREAM"):
        warnings.append("--cors-* and --http-invoke-mode apply to --http-format function-url only")
    return {
        "http_address": address,
        "http_format": fmt,
        "http_invoke_mode": a.http_invoke_mode or "BUFFERED",
        "http_integration_timeout_s": a.http_integration_timeout,
        "routes": routes,
        "cors_allow_origins": tuple(o.strip() for o in a.cors_allow_origin if o.strip()),
        "cors_allow_methods": tuple(m.upper() for m in _csv(a.cors_allow_methods)),
        "cors_allow_headers": _csv(a.cors_allow_headers),
        "cors_expose_headers": _csv(a.cors_expose_headers),
        "cors_max_age": max_age,
        "cors_allow_credentials": a.cors_allow_credentials,
    }


def _env_number(
    env: Mapping[str, str], key: str, kind: type[float] | type[int]
) -> float | int | None:
    text = env.get(key)
    if text is None or text == "":
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{key}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{key}: not a finite number: {text!r}")
    return value


def _sandbox_mode(flag: str | None, env: Mapping[str, str]) -> str:
    """--sandbox, else RIE_SANDBOX (one switch for every rie a script or suite starts), else
    lambda."""
    if flag:
        return flag
    value = env.get("RIE_SANDBOX", "").strip().lower() or "lambda"
    if value not in ("lambda", "off"):
        raise ConfigError(f"RIE_SANDBOX: expected lambda or off, got {value!r}")
    return value


def _first(*values: float | None) -> float:
    """The first value given: a flag, then a variable, then the default (last)."""
    for value in values:
        if value is not None:
            return value
    raise AssertionError("a default is always given")


def find_bootstrap(task_root: str) -> str | None:
    for candidate in (os.path.join(task_root, "bootstrap"), *BOOTSTRAP_CANDIDATES):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def resolve_command(command: Sequence[str], handler: str, task_root: str) -> tuple[str, ...]:
    """The bootstrap to run: the one given (its executable made absolute), else the task root's
    `bootstrap` or the usual places, else with a handler this project's Python runtime."""
    command = list(command)
    if not command:
        found = find_bootstrap(task_root)
        if found:
            command = [found]
        elif handler:
            command = [sys.executable, "-c", RUNTIME_ENTRY]
        else:
            raise ConfigError(
                "no bootstrap: give a COMMAND, put an executable bootstrap in the task root, "
                "/var/task, /opt or /var/runtime, or give --handler to run the Python runtime"
            )
    # the runtime runs in the task root, so a relative command must be resolved from here
    exe = command[0]
    exe = os.path.abspath(exe) if os.sep in exe else shutil.which(exe) or exe
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise ConfigError(f"bootstrap {command[0]!r} is not an executable file")
    command[0] = exe
    return tuple(command)


# a Config's numbers and the flag (or key, with `_` for `-`) that sets each
_NUMBERS = {
    "timeout_s": "--timeout",
    "queue_timeout_s": "--queue-timeout",
    "idle_timeout_s": "--idle-timeout",
    "event_retry_delay_s": "--event-retry-delay",
    "event_max_age_s": "--event-max-age",
    "shutdown_timeout_s": "--shutdown-timeout",
    "request_head_timeout_s": "--request-head-timeout",
    "keepalive_timeout_s": "--keepalive-timeout",
    "http_integration_timeout_s": "--http-integration-timeout",
}


def _check_external(a: argparse.Namespace, command: Sequence[str], one_function: bool) -> None:
    """--external-runtime: one environment, whose runtime rie neither starts nor restarts."""
    if not one_function:
        raise ConfigError("--external-runtime serves one function: not with --config/--template")
    if command:
        raise ConfigError("--external-runtime starts no runtime: give no COMMAND")
    for flag, value in (
        ("--watch", a.watch),
        ("--max-concurrency", (a.max_concurrency or 1) > 1),
        ("--per-environment-concurrency", (a.per_environment_concurrency or 1) > 1),
        ("--provisioned", bool(a.provisioned)),
        ("--init lazy", a.init == "lazy"),
    ):
        if value:
            raise ConfigError(
                f"{flag} with --external-runtime: it is one environment, its runtime is not rie's to start"
            )
    path = a.external_runtime_env
    if path is not None:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory) or os.path.isdir(path):
            raise ConfigError(f"--external-runtime-env: cannot write {path}: no such directory")


def check_function(config: Config) -> Config:
    """The per-function limits, checked the same way whether they came from flags or a file."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        # NaN passes every comparison's negation, and infinity every upper bound
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(
                f"{_NUMBERS.get(f.name, f.name)} must be a finite number, got {value}"
            )
    if not 0 < config.timeout_s <= MAX_TIMEOUT_S:
        raise ConfigError(
            f"timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds, "
            f"got {config.timeout_s:g}"
        )
    if not 128 <= config.memory_mb <= 10240:
        raise ConfigError(f"memory must be 128-10240 MB, got {config.memory_mb}")
    if not 512 <= config.ephemeral_storage_mb <= 10240:
        raise ConfigError(
            f"ephemeral storage must be 512-10240 MB, got {config.ephemeral_storage_mb}"
        )
    if config.sandbox not in ("lambda", "off"):
        raise ConfigError(f"sandbox must be 'lambda' or 'off', got {config.sandbox!r}")
    name = config.function_name
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 64:
        raise ConfigError(f"function name {name!r}: letters, digits, '-' and '_' only, at most 64")
    if not 1 <= config.max_concurrency <= MAX_CONCURRENCY:
        raise ConfigError(
            f"--max-concurrency must be 1-{MAX_CONCURRENCY} (Lambda's default account "
            f"concurrency), got {config.max_concurrency}"
        )
    if not 1 <= config.per_env_concurrency <= MAX_PER_ENV_CONCURRENCY:
        raise ConfigError(
            f"--per-environment-concurrency must be 1-{MAX_PER_ENV_CONCURRENCY}, "
            f"got {config.per_env_concurrency}"
        )
    for key, value in config.user_env.items():
        check_env_entry(key, value, "env")
    if not 0 <= config.provisioned <= config.max_concurrency:
        raise ConfigError("--provisioned must be between 0 and --max-concurrency")
    if not 0 <= config.event_retries <= 2:
        raise ConfigError("--event-retries must be 0, 1 or 2 (as Lambda's MaximumRetryAttempts)")
    for what, value in (
        ("--queue-timeout", config.queue_timeout_s),
        ("--idle-timeout", config.idle_timeout_s),
        ("--event-retry-delay", config.event_retry_delay_s),
        ("--event-max-age", config.event_max_age_s),
    ):
        if value < 0:
            raise ConfigError(f"{what} must not be negative")
    return config


def load(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """The one function the command line describes (COMMAND, --handler, --task-root, --zip)."""
    a = build_parser().parse_args(list(argv))
    if a.config or a.template:
        raise ConfigError("--config and --template describe several functions: use load_all")
    return from_args(a, env)


def from_args(a: argparse.Namespace, env: Mapping[str, str], one_function: bool = True) -> Config:
    warnings: list[str] = []
    command = list(a.command)
    if command and command[0] == "--":
        command = command[1:]

    if a.zip:
        if not one_function:
            raise ConfigError("--zip with --config/--template: give `zip` per function in the file")
        if a.task_root:
            raise ConfigError("--zip and --task-root: give one, the zip is the task root")
        from rie.settings.package import unpack  # only with --zip

        a.task_root = unpack(a.zip)
    external = a.external_runtime or a.external_runtime_env is not None
    if external:
        _check_external(a, command, one_function)
    if not one_function:
        for flag, value in (
            ("a COMMAND", command),
            ("--handler", a.handler),
            ("--task-root", a.task_root),
            ("--function-name", a.function_name),
            ("--route", a.route),  # a route names its function
        ):
            if value:
                raise ConfigError(
                    f"{flag} with --config/--template: give it per function in the file"
                )
    task_root = (
        a.task_root
        or env.get("LAMBDA_TASK_ROOT")
        or ("/var/task" if os.path.isdir("/var/task") else ".")
    )
    task_root = os.path.abspath(task_root)
    if one_function and not os.path.isdir(task_root):
        raise ConfigError(f"--task-root: {task_root} is not a directory")

    handler = a.handler or (command[-1] if len(command) > 1 else "") or env.get("_HANDLER", "")
    if one_function and not external:
        command = list(resolve_command(command, handler, task_root))

    timeout = _first(
        a.timeout, _env_number(env, "AWS_LAMBDA_FUNCTION_TIMEOUT", float), DEFAULT_TIMEOUT_S
    )
    memory = int(
        _first(
            a.memory, _env_number(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", int), DEFAULT_MEMORY_MB
        )
    )
    name = a.function_name or env.get("AWS_LAMBDA_FUNCTION_NAME") or DEFAULT_FUNCTION_NAME

    invoke_address = parse_address(
        a.runtime_interface_emulator_address or "127.0.0.1:8080",
        "--runtime-interface-emulator-address",
    )
    runtime_address = parse_address(
        a.runtime_api_address or "127.0.0.1:9001", "--runtime-api-address"
    )
    if not _is_loopback(runtime_address.host):
        warnings.append(
            f"the Runtime API listens on loopback only: using 127.0.0.1 instead of {runtime_address.host}"
        )
        runtime_address = Address("127.0.0.1", runtime_address.port)
    else:
        _check_can_listen(runtime_address.host, "--runtime-api-address")

    log_level = (a.log_level or env.get("LOG_LEVEL") or "info").lower()
    if log_level == "warning":
        log_level = "warn"
    if log_level not in ("debug", "info", "warn", "error"):
        raise ConfigError(f"--log-level: expected debug, info, warn or error, got {log_level!r}")

    user_env: dict[str, str] = {}
    for path in a.env_file:
        user_env.update(read_env_file(path))
    user_env.update(parse_env_pairs(a.env, "--env"))
    if sum(len(k) + len(v) for k, v in user_env.items()) > USER_ENV_LIMIT:
        warnings.append("the function's own variables exceed Lambda's 4 KB limit")

    # an external runtime is one environment, made at start-up so that it can connect at once
    max_conc = 1 if external else int(_first(a.max_concurrency, DEFAULT_MAX_CONCURRENCY))
    per_env = int(_first(a.per_environment_concurrency, 1))
    provisioned = int(_first(a.provisioned, 0))
    for flag, value in (
        ("--shutdown-timeout", a.shutdown_timeout),
        ("--keepalive-timeout", a.keepalive_timeout),
    ):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must not be negative")
    if a.request_head_timeout is not None and not a.request_head_timeout > 0:
        raise ConfigError("--request-head-timeout must be more than 0")

    from rie.settings.layers import check as check_layers

    try:
        layers = check_layers(a.layer)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    extensions_dir = a.extensions_dir
    if extensions_dir is not None:
        extensions_dir = os.path.abspath(extensions_dir)
        if not os.path.isdir(extensions_dir):
            raise ConfigError(f"--extensions-dir: {extensions_dir} is not a directory")
    http = _http_settings(a, warnings)
    config = Config(
        command=tuple(command),
        handler=handler,
        function_name=name,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        timeout_s=timeout,
        memory_mb=memory,
        task_root=task_root,
        user_env=user_env,
        invoke_address=invoke_address,
        runtime_api_address=runtime_address,
        runtime_api_port_explicit=a.runtime_api_address is not None,
        log_level=log_level,
        init_eagerly=a.init == "eager" or external,
        max_concurrency=max_conc,
        per_env_concurrency=per_env,
        provisioned=provisioned,
        queue_timeout_s=_first(a.queue_timeout, 0.0),
        idle_timeout_s=_first(a.idle_timeout, DEFAULT_IDLE_TIMEOUT_S),
        event_retries=int(_first(a.event_retries, 2)),
        event_retry_delay_s=_first(a.event_retry_delay, 1.0),
        event_max_age_s=_first(a.event_max_age, 21600.0),
        event_failure_file=a.event_failure_file,
        shutdown_timeout_s=_first(a.shutdown_timeout, 5.0),
        request_head_timeout_s=_first(a.request_head_timeout, 10.0),
        keepalive_timeout_s=_first(a.keepalive_timeout, 75.0),
        layers=layers,
        extensions_dir=extensions_dir,
        warnings=tuple(warnings),
        watch=a.watch,
        # (nothing of rie's runs the function's code with an external runtime)
        sandbox="off" if external else _sandbox_mode(a.sandbox, env),
        ephemeral_storage_mb=int(_first(a.ephemeral_storage, 512)),
        external_runtime=external,
        external_runtime_env=(
            None if a.external_runtime_env is None else os.path.abspath(a.external_runtime_env)
        ),
        dashboard_address=(
            None if a.dashboard is None else _loopback_unless_named(a.dashboard, "--dashboard")
        ),
        **http,
    )
    return check_function(config)
