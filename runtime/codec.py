"""JSON in and out of the runtime, with awslambdaric's semantics and orjson's speed.

orjson does the common case once it is loaded. Whatever it refuses (integers beyond 64 bits,
non-string keys) or would render differently from awslambdaric (datetimes and dataclasses,
which awslambdaric refuses) goes to the standard library, whose error messages are the ones
awslambdaric's users see. Where orjson goes beyond awslambdaric (UUIDs and Enums are written,
NaN and the infinities become null), the standard-library path does the same, so a result never
comes out differently on the first invocation than on later ones. Importing orjson costs more than the whole interpreter start-up, so
it is never imported on the way to the first `next` nor during the first invocation: `preload`
runs on a helper thread while the runtime waits, and until it is done the standard library
does the work, with the same results.
"""

from __future__ import annotations

import os
import sys

from runtime.errors import MARSHAL_ERROR, UNMARSHAL_ERROR, FaultError

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any

_orjson: Any = None  # set once orjson is fully imported, never while it is half-loaded
_DUMPS_OPTIONS = 0


_LONG_DIGITS: Any = None  # compiled with orjson: `re` is loaded by then anyway


def _long_digits(body: bytes | str) -> Any:
    return _LONG_DIGITS.search(
        body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    )


def preload() -> None:
    """Import orjson (on a helper thread while the runtime waits in `next`); until it is in,
    every call here uses the standard library, which gives the same results."""
    global _orjson, _DUMPS_OPTIONS, _LONG_DIGITS
    if _orjson is not None:
        return
    try:
        import orjson
    except ImportError:  # the stdlib path still works, only slower
        return
    import re

    _LONG_DIGITS = re.compile(rb"[0-9]{19}")
    _DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    _orjson = orjson  # last: other threads take orjson's path only once all of it is ready


def _loaded_class(module: str, name: str) -> Any:
    """A class from a module only if it is already loaded (never importing it ourselves): no
    instance can exist before its class does. The module may be half-imported right now by the
    thread that preloads orjson, so the class may not be there yet."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _is_decimal(obj: Any) -> bool:
    decimal_class = _loaded_class("decimal", "Decimal")
    return decimal_class is not None and isinstance(obj, decimal_class)


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_asdict")


def _orjson_default(obj: Any) -> Any:
    # Decimals go out as their exact digits, as awslambdaric writes them; NaN as NaN
    if _is_decimal(obj):
        return _orjson.Fragment("NaN" if obj.is_nan() else str(obj))
    # named tuples become objects, as with simplejson
    if _is_namedtuple(obj):
        return obj._asdict()
    raise TypeError


class _NotJson(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise _NotJson(name)


def _constant_position(text: str) -> int:
    """Where the first NaN/Infinity outside a string starts (for the error message)."""
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "NI-" and text.startswith(("NaN", "Infinity", "-Infinity"), i):
            return i
    return 0


def loads(body: bytes | str) -> Any:
    """Parse strict JSON (no NaN or Infinity, as awslambdaric); errors worded as the stdlib's."""
    oj = _orjson
    # orjson reads an integer beyond 64 bits as a float; awslambdaric keeps it exact. Only a run
    # of 19 or more digits can be one, so only such bodies go to the stdlib.
    if oj is not None and _long_digits(body) is None:
        try:
            return oj.loads(body)
        except oj.JSONDecodeError:
            pass  # the stdlib words errors as awslambdaric's users expect
    import json

    try:
        return json.loads(body, parse_constant=_reject_constant)
    except _NotJson:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise json.JSONDecodeError("Expecting value", text, _constant_position(text)) from None


def decode_event(body: bytes, content_type: str | None) -> Any:
    """The event as the handler sees it: parsed JSON, or the raw bytes for other content types."""
    if content_type is not None and content_type != "application/json":
        return body
    try:
        return loads(body)
    except ValueError as e:
        raise FaultError(UNMARSHAL_ERROR, f"Unable to unmarshal input: {e}") from None


def encode_result(result: Any) -> tuple[bytes, str]:
    """The response body and its content type; `bytes` results are passed through as they are."""
    if isinstance(result, bytes):
        return result, "application/unknown"
    oj = _orjson
    if oj is not None:
        try:
            body: bytes = oj.dumps(result, default=_orjson_default, option=_DUMPS_OPTIONS)
            return body, "application/json"
        except TypeError:
            pass  # e.g. integers beyond 64 bits or non-string keys: the stdlib handles those
    try:
        return _stdlib_dumps(result).encode("utf-8", "surrogatepass"), "application/json"
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise FaultError(MARSHAL_ERROR, f"Unable to marshal response: {e}") from None


def _namedtuples_as_dicts(obj: Any) -> Any:
    # the stdlib encoder writes every tuple as an array and never asks `default`
    if isinstance(obj, dict):
        return {k: _namedtuples_as_dicts(v) for k, v in obj.items()}
    if _is_namedtuple(obj):
        return {k: _namedtuples_as_dicts(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [_namedtuples_as_dicts(v) for v in obj]
    return obj


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _stdlib_dumps(result: Any) -> str:
    import json

    # Decimals must come out as raw digits, which the stdlib encoder cannot emit: write a
    # unique placeholder string for each and substitute the digits afterwards.
    token = "\x00" + os.urandom(8).hex()
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if _is_decimal(obj):
            raws.append("NaN" if obj.is_nan() else str(obj))
            return f"{token}{len(raws) - 1}\x00"
        # what orjson writes natively is written the same way here, so that a result comes
        # out the same before and after orjson is loaded
        uuid_class = _loaded_class("uuid", "UUID")
        if uuid_class is not None and isinstance(obj, uuid_class):
            return str(obj)
        enum_class = _loaded_class("enum", "Enum")
        if enum_class is not None and isinstance(obj, enum_class):
            return obj.value
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    data = _namedtuples_as_dicts(result)
    try:
        text = json.dumps(
            data, ensure_ascii=False, allow_nan=False, default=default, separators=(",", ":")
        )
    except ValueError as e:
        if "Out of range float" not in str(e):
            raise
        # orjson writes NaN and the infinities as null (they are not JSON)
        text = json.dumps(_finite(data), ensure_ascii=False, default=default, separators=(",", ":"))
    if raws:
        quoted = json.dumps(token)[:-1]
        for i, raw in enumerate(raws):
            text = text.replace(f'{quoted}{i}\\u0000"', raw)
    return text


def dumps(obj: Any) -> bytes:
    """Encode the runtime's own payloads (error bodies): plain data, UTF-8 output."""
    oj = _orjson
    if oj is not None:
        try:
            return oj.dumps(obj)  # type: ignore[no-any-return]
        except TypeError:
            pass
    import json

    text = json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")
