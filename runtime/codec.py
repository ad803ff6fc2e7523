"""JSON in and out of the runtime, with awslambdaric's semantics and orjson's speed.

orjson does the common case. Whatever it refuses (integers beyond 64 bits, non-string keys) or
would render differently from awslambdaric (datetimes and dataclasses, which awslambdaric
refuses) goes to the standard library, whose error messages are the ones awslambdaric's users
see. orjson itself is imported only once the first event is in hand (or by `preload` on a
thread while the runtime waits), because importing it costs more than the whole interpreter
start-up and must not delay the first `next`.
"""

from __future__ import annotations

import sys
from typing import Any

from runtime.errors import MARSHAL_ERROR, UNMARSHAL_ERROR, FaultError

_orjson: Any = None
_DUMPS_OPTIONS = 0


def _load_orjson() -> Any:
    global _orjson, _DUMPS_OPTIONS
    if _orjson is None:
        import orjson

        _DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
        _orjson = orjson
    return _orjson


def preload() -> None:
    """Import orjson now (meant for a helper thread while the runtime blocks in `next`)."""
    try:  # noqa: SIM105 (contextlib is an import the runtime does not otherwise need)
        _load_orjson()
    except ImportError:  # the stdlib fallback still works, only slower
        pass


def _is_decimal(obj: Any) -> bool:
    # a Decimal can only exist once its module is loaded; never import it ourselves
    mod = sys.modules.get("decimal")
    return mod is not None and isinstance(obj, mod.Decimal)


def _orjson_default(obj: Any) -> Any:
    # Decimals go out as their exact digits, as awslambdaric writes them; NaN as NaN
    if _is_decimal(obj):
        return _orjson.Fragment("NaN" if obj.is_nan() else str(obj))
    # named tuples become objects, as with simplejson
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return obj._asdict()
    raise TypeError


def loads(body: bytes | str) -> Any:
    """Parse JSON; errors surface as the standard library reports them."""
    oj = _orjson or _try_load()
    if oj is not None:
        try:
            return oj.loads(body)
        except oj.JSONDecodeError:
            pass  # the stdlib accepts more (NaN, big integers) and words its errors as expected
    import json

    return json.loads(body)


def _try_load() -> Any:
    try:
        return _load_orjson()
    except ImportError:
        return None


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
    oj = _orjson or _try_load()
    if oj is not None:
        try:
            return oj.dumps(
                result, default=_orjson_default, option=_DUMPS_OPTIONS
            ), "application/json"
        except TypeError:
            pass
    try:
        return _stdlib_dumps(result).encode("utf-8", "surrogatepass"), "application/json"
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise FaultError(MARSHAL_ERROR, f"Unable to marshal response: {e}") from None


def _stdlib_dumps(result: Any) -> str:
    import json
    import secrets

    # Decimals must come out as raw digits, which the stdlib encoder cannot emit: write a
    # unique placeholder string for each and substitute the digits afterwards.
    token = "\x00" + secrets.token_hex(8)
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if _is_decimal(obj):
            raws.append("NaN" if obj.is_nan() else str(obj))
            return f"{token}{len(raws) - 1}\x00"
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    text = json.dumps(result, ensure_ascii=False, allow_nan=True, default=default)
    if raws:
        quoted = json.dumps(token)[:-1]
        for i, raw in enumerate(raws):
            text = text.replace(f'{quoted}{i}\\u0000"', raw)
    return text


def dumps(obj: Any) -> bytes:
    """Encode the runtime's own payloads (error bodies): plain data, UTF-8 output."""
    oj = _orjson or _try_load()
    if oj is not None:
        try:
            return oj.dumps(obj)  # type: ignore[no-any-return]
        except TypeError:
            pass
    import json

    return json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def dumps_ascii(obj: Any) -> str:
    """Encode for an HTTP header value: ASCII only, one line."""
    import json

    return json.dumps(obj, ensure_ascii=True, default=str)
