"""Error payloads: the JSON the Runtime API receives for init and invocation errors.

Owns the error types awslambdaric reports, the `{"errorMessage", "errorType", "requestId",
"stackTrace"}` body, stack traces with the runtime's own frames removed, and the X-Ray cause.
`traceback` is imported only when an error actually happens.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"
# X-Ray labels faults the runtime itself detected (bad input, unserialisable output) this way
_VALIDATION_FAULT = "LambdaValidationError"
_XRAY_CAUSE_LIMIT = 1024 * 1024

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class FaultError(Exception):
    """A failure the runtime reports with a Lambda error type of its own (`Runtime.*`)."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace


def make_error(
    message: str, error_type: str, stack_trace: list[str] | None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id,
        "stackTrace": stack_trace or [],
    }


def _user_frames(tb: TracebackType | None) -> list[tuple[str, int, str, str]]:
    """(file, line, function, source) for each frame, the runtime's leading frames dropped."""
    import traceback

    frames = [(f.filename, f.lineno or 0, f.name, f.line or "") for f in traceback.extract_tb(tb)]
    for i, frame in enumerate(frames):
        if not frame[0].startswith(_RUNTIME_DIR):
            return frames[i:]
    return frames


def format_frames(frames: list[tuple[str, int, str, str]]) -> list[str]:
    """One string per frame, as Python prints them, without 3.11's column markers."""
    out = []
    for filename, lineno, name, line in frames:
        text = f'  File "{filename}", line {lineno}, in {name}\n'
        if line:
            text += f"    {line.strip()}\n"
        out.append(text)
    return out


def xray_cause(error_type: str, message: str, frames: list[tuple[str, int, str, str]]) -> str:
    """The `Lambda-Runtime-Function-XRay-Error-Cause` header value ("" when too large)."""
    import json  # rare (errors only); the header value must be ASCII on one line

    paths = list(dict.fromkeys(f[0] for f in frames))
    cause = {
        "working_directory": os.getcwd(),
        "exceptions": [
            {
                "message": message,
                "type": error_type,
                "stack": [{"label": f[2], "path": f[0], "line": f[1]} for f in frames],
            }
        ],
        "paths": paths,
    }
    text = json.dumps(cause, ensure_ascii=True, default=str)
    return text if len(text) < _XRAY_CAUSE_LIMIT else ""


def from_exception(exc: BaseException, request_id: str = "") -> tuple[dict[str, Any], str]:
    """The error body and X-Ray cause for an exception raised by user code or the runtime."""
    if isinstance(exc, FaultError):
        body = make_error(exc.message, exc.error_type, exc.stack_trace, request_id)
        return body, xray_cause(_VALIDATION_FAULT, exc.message, [])
    frames = _user_frames(exc.__traceback__)
    name = type(exc).__name__
    message = str(exc)
    return make_error(message, name, format_frames(frames), request_id), xray_cause(
        name, message, frames
    )


def header_error_type(error_type: str) -> str:
    """The error type as an HTTP header value (printable ASCII without spaces only)."""
    cleaned = "".join(c for c in error_type if "!" <= c <= "~")
    return cleaned or "Runtime.Unknown"
