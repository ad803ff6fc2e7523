"""`_X_AMZN_TRACE_ID`, the one environment variable that changes with every invocation.

`os.environ[...] = value` calls the C library's `setenv`, which copies "name=value" and, because a
pointer returned by `getenv` must stay valid, never frees the copy it replaces: it keeps every
value it ever allocated in a search tree, to reuse identical ones. A trace id is new on every
invocation, so each one leaked ~140 bytes (28 MB per 200,000 invocations, in awslambdaric too)
and made the next `setenv` walk a deeper tree (4-6 µs each here, growing).

Here the variable lives in one buffer this module owns, put into the C environment once with
`putenv` (which stores the pointer, not a copy) and rewritten in place; `os.environ`'s own mapping
is updated alongside, so Python code and child processes see the same value as before. ctypes
is needed for that and is imported on the preload thread, never on the way to the first `next`:
until it is in, and wherever this cannot work, `os.environ` is used as before.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NAME = "_X_AMZN_TRACE_ID"
_KEY = NAME.encode()
_PREFIX = _KEY + b"="
_CAPACITY = 512  # trace headers are ~80 bytes; a longer value goes the ordinary way


class _State:
    buffer: Any = None  # "NAME=value\0", what the C environment points at once pinned
    address = 0
    memmove: Any = None
    putenv: Any = None
    data: Any = None  # os.environ's own mapping (bytes keys and values on POSIX)
    last: Any = None  # the value object last stored in `data`: if another is there, it was
    # set some other way (setenv copied it: the buffer is no longer in the C environment)


_state = _State()


def preload() -> None:
    """Set up the buffer (called on the preload thread)."""
    if _state.buffer is not None or os.name != "posix":
        return
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return
    try:
        import ctypes

        putenv = ctypes.CDLL(None).putenv
        putenv.argtypes = (ctypes.c_char_p,)
        putenv.restype = ctypes.c_int
        buffer = ctypes.create_string_buffer(_PREFIX, len(_PREFIX) + _CAPACITY + 1)
    except (ImportError, OSError, AttributeError):
        return
    _state.memmove, _state.putenv, _state.data = ctypes.memmove, putenv, data
    _state.address = ctypes.addressof(buffer) + len(_PREFIX)
    _state.buffer = buffer  # last: set() takes this path only once all of it is ready


def set(value: str | None) -> None:
    """Give `_X_AMZN_TRACE_ID` this invocation's value (None: remove it)."""
    st = _state
    if st.buffer is None or value is None:
        if value is not None:
            os.environ[NAME] = value
        elif NAME in os.environ:
            del os.environ[NAME]
        return
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > _CAPACITY or b"\0" in raw:
        os.environ[NAME] = value
        return
    pinned = st.last is not None and st.data.get(_KEY) is st.last
    # the NUL first: a reader never sees the new value's start joined to the old one's end
    st.memmove(st.address + len(raw), b"\0", 1)
    st.memmove(st.address, raw, len(raw))
    if not pinned and st.putenv(st.buffer) != 0:
        st.last = None
        os.environ[NAME] = value
        return
    st.data[_KEY] = raw
    st.last = raw
