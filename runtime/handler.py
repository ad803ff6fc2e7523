"""Handler resolution: `module.function` to a callable, or the init error awslambdaric reports.

Owns the handler string's grammar (`pkg/sub/mod.fn` or `pkg.sub.mod.fn`) and the mapping of
every way importing it can fail to a Lambda error type and message.
"""

from __future__ import annotations

import importlib
import sys

from runtime.errors import (
    BUILT_IN_MODULE_CONFLICT,
    HANDLER_NOT_FOUND,
    IMPORT_MODULE_ERROR,
    MALFORMED_HANDLER_NAME,
    USER_CODE_SYNTAX_ERROR,
    FaultError,
)

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Handler = Callable[[Any, Any], Any]


def make_way() -> None:
    """Leave the name `runtime` to the function's own module when it has one (a `runtime.py`
    beside its handler, in a layer): its `import runtime` must get its module, not this client.

    Only the top-level name is given up: this client's modules stay loaded under their full
    names (`runtime.loop`, ...), which its code holds and imports by, so it goes on working."""
    own = sys.modules.get("runtime")
    if own is None:
        return
    from importlib.machinery import PathFinder  # loaded with importlib; costs a lookup

    found = PathFinder.find_spec("runtime", sys.path)
    if found is not None and found.origin != getattr(own, "__file__", None):
        del sys.modules["runtime"]


def resolve(spec: str) -> Handler:
    """Import the handler's module and return the function; raise FaultError on known failures.

    Any other exception raised by the module's own code propagates unchanged: it becomes an
    init error named after its class."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as e:
        raise FaultError(MALFORMED_HANDLER_NAME, f"Bad handler '{spec}': {e}") from None

    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise FaultError(
                BUILT_IN_MODULE_CONFLICT,
                f"Cannot use built-in module {module_name} as a handler module",
            )
        make_way()
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as e:
        raise FaultError(
            IMPORT_MODULE_ERROR, f"Unable to import module '{module_name}': {e}"
        ) from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise FaultError(
            USER_CODE_SYNTAX_ERROR, f"Syntax error in module '{module_name}': {e}", trace
        ) from None

    try:
        handler: Handler = getattr(module, function_name)
    except AttributeError:
        raise FaultError(
            HANDLER_NOT_FOUND, f"Handler '{function_name}' missing on module '{module_name}'"
        ) from None
    return handler
