"""The function's log: where output goes (stdout or the telemetry fd) and how records look.

Owns the log sinks, the text and JSON record formats of awslambdaric (`AWS_LAMBDA_LOG_FORMAT`,
`AWS_LAMBDA_LOG_LEVEL`), the telemetry frame format and the error report written when an
invocation or init fails. The `logging` package is expensive to import, so it is configured at
the moment something first imports it (a one-shot import hook): a function that never logs never
pays for it, and one that does finds the root handler installed before its own code runs, just
as under awslambdaric (so `logging.basicConfig()` in user code stays a no-op there as here).
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, Protocol

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
_TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_ERROR_LINE_END = "\r"  # one log event per record on stdout: lines joined by CR, ended by LF
_ERROR_INDENT = "\u00a0"  # leading spaces of traceback lines become no-break spaces

# telemetry frame types, by level (0 = no level)
_TEXT_FRAMES = {
    0: 0xA55A0003,
    10: 0xA55A000B,
    20: 0xA55A000F,
    30: 0xA55A0013,
    40: 0xA55A0017,
    50: 0xA55A001B,
}
_JSON_FRAMES = {
    0: 0xA55A0002,
    10: 0xA55A000A,
    20: 0xA55A000E,
    30: 0xA55A0012,
    40: 0xA55A0016,
    50: 0xA55A001A,
}

# record attributes that are never copied into a JSON log line as extra fields
_RESERVED = frozenset(
    {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
        "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
        "relativeCreated", "thread", "threadName", "processName", "process",
        "aws_request_id", "tenant_id", "_frame_type",
    }
)  # fmt: skip

json_format = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
_level_env = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
log_level = {None: "", "TRACE": "DEBUG"}.get(_level_env, _level_env or "").upper()

# the invocation being served, stamped on every log record
request_id: str | None = None
tenant_id: str | None = None


if TYPE_CHECKING:

    class Sink(Protocol):
        def log(self, msg: str, frame_type: int | None = None) -> None: ...
        def log_error(self, lines: list[str]) -> None: ...


class StdoutSink:
    """Everything to stdout, one record per write."""

    def log(self, msg: str, frame_type: int | None = None) -> None:
        sys.stdout.write(msg)

    def log_error(self, lines: list[str]) -> None:
        sys.stdout.write(_ERROR_LINE_END.join(lines) + "\n")


class TelemetrySink:
    """Framed records on the telemetry fd: type, length, timestamp (µs), UTF-8 message."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def log(self, msg: str, frame_type: int | None = None) -> None:
        data = msg.encode("utf-8", "replace")
        ts = time.time_ns() // 1000
        frame = (
            (frame_type or _TEXT_FRAMES[0]).to_bytes(4, "big")
            + len(data).to_bytes(4, "big")
            + ts.to_bytes(8, "big")
            + data
        )
        view = memoryview(frame)
        while view:
            view = view[os.write(self.fd, view) :]

    def log_error(self, lines: list[str]) -> None:
        frames = _JSON_FRAMES if json_format else _TEXT_FRAMES
        self.log("\n".join(lines), frames[40])


_sink: Sink | None = None


def create_sink() -> Sink:
    """The sink for this process: the telemetry fd when one is given, else stdout."""
    global _sink
    fd = os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
    _sink = TelemetrySink(int(fd)) if fd else StdoutSink()
    return _sink


def current_sink() -> Sink | None:
    return _sink


def log_error(error: dict[str, Any]) -> None:
    """Report an init or invocation error in the function's log, as awslambdaric does."""
    sink = _sink or StdoutSink()
    if json_format:
        import json

        stamp = time.strftime(_DATETIME_FORMAT, time.gmtime())
        sink.log_error(
            [json.dumps({"timestamp": stamp, "level": "ERROR", **error}, ensure_ascii=False)]
        )
        return
    head = "[ERROR]"
    if error.get("errorType"):
        head += " " + error["errorType"]
    if error.get("errorMessage"):
        head += (":" if error.get("errorType") else "") + " " + error["errorMessage"]
    lines = [head]
    trace = error.get("stackTrace")
    if trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            if element == "":
                lines.append("")
                continue
            for line in element.splitlines():
                stripped = line.lstrip(" ")
                lines.append(_ERROR_INDENT * (len(line) - len(stripped)) + stripped)
    sink.log_error(lines)


# -- the logging package ----------------------------------------------------------------------


def _level_bucket(levelno: int) -> int:
    return min(50, max(0, levelno)) // 10 * 10


def configure_logging(logging: ModuleType) -> None:
    """Install the Lambda handler on the root logger of the (just imported) logging package."""
    import json

    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode

    class LambdaHandler(logging.Handler):  # type: ignore[name-defined,misc]
        def __init__(self, sink: Sink, with_frame_type: bool) -> None:
            super().__init__()
            self.log_sink = sink
            self.with_frame_type = with_frame_type

        def filter(self, record: Any) -> bool:
            record.aws_request_id = request_id or ""
            record.tenant_id = tenant_id
            return bool(super().filter(record))

        def emit(self, record: Any) -> None:
            msg = self.format(record)
            if self.with_frame_type:
                frame = (
                    getattr(record, "_frame_type", None)
                    or _TEXT_FRAMES[_level_bucket(record.levelno)]
                )
                self.log_sink.log(msg, frame)
            else:
                self.log_sink.log(msg)

    class JsonFormatter(logging.Formatter):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__(datefmt=_DATETIME_FORMAT)

        def format(self, record: Any) -> str:
            record.levelno = _level_bucket(record.levelno)
            record.levelname = logging.getLevelName(record.levelno)
            record._frame_type = _JSON_FRAMES.get(record.levelno, _JSON_FRAMES[0])
            exc = record.exc_info
            if exc:
                import traceback

                trace: Any = traceback.format_tb(exc[2])
            msg = record.msg
            result: dict[str, Any] = {
                "timestamp": self.formatTime(record, self.datefmt),
                "level": record.levelname,
                "message": msg
                if isinstance(msg, dict) and not record.args
                else record.getMessage(),
                "logger": record.name,
                "stackTrace": trace if exc else None,
                "errorType": exc[0].__name__ if exc and exc[0] else None,
                "errorMessage": str(exc[1]) if exc else None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
            }
            if getattr(record, "tenant_id", None) is not None:
                result["tenantId"] = record.tenant_id
            for key, value in record.__dict__.items():
                if key not in _RESERVED and key not in result:
                    result[key] = value
            return str(encode({k: v for k, v in result.items() if v is not None})) + "\n"

    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    handler = LambdaHandler(_sink or StdoutSink(), bool(json_format or log_level))
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _TEXT_DATE_FORMAT))
    if log_level in logging._nameToLevel:
        root.setLevel(log_level)
    root.addHandler(handler)


class _ConfigureOnImport:
    """A one-shot meta-path finder: lets `logging` load normally, then configures it."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec: ModuleSpec | None = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        load = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            load(module)
            configure_logging(module)

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Make sure log records take the Lambda format, now or when logging is first imported."""
    logging = sys.modules.get("logging")
    if logging is not None:
        configure_logging(logging)
    else:
        sys.meta_path.insert(0, _ConfigureOnImport())
