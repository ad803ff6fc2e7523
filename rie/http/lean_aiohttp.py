"""Importing aiohttp's server without its client, in the `rie` process.

`import aiohttp` runs the package's `__init__`, which imports the whole client (connector, cookie
jar, tracing, ...) and builds two TLS contexts loading the system's CA certificates: about 60% of
the import, none of which the emulator uses. Here the package is entered without running its
`__init__`: its submodules (`aiohttp.web`, `aiohttp.web_protocol`, ...) import as usual, and the
first use of anything else of the package (`aiohttp.ClientSession`) runs the real `__init__`
then, so the package stays whole for whoever needs it.

Invariant: after `enter_server_side()`, `aiohttp` behaves as the real package, only later; should
aiohttp's server ever need its `__init__` at import, the half-entered package is dropped and
aiohttp is imported as usual.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.machinery import PathFinder

_VERSION = re.compile(rb"""__version__\s*=\s*["']([^"']+)["']""")


def enter_server_side() -> bool:
    """Put a lazily completed `aiohttp` package in sys.modules; False if it is imported already
    or cannot be entered this way (then nothing is changed)."""
    if "aiohttp" in sys.modules:
        return False
    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    try:
        with open(spec.origin or "", "rb") as f:
            found = _VERSION.search(f.read(4096))  # aiohttp.http reads it at import
    except OSError:
        return False
    if found is None:
        return False
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    path = list(spec.submodule_search_locations)

    def complete(name: str) -> object:
        if name.startswith("__") or PathFinder.find_spec(f"aiohttp.{name}", path) is not None:
            # a submodule (`from aiohttp import web` asks first), or a probe such as `__file__`
            raise AttributeError(name)
        # the first use of what only the package's `__init__` defines: run it, once
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = complete
    package.__dict__["__version__"] = found.group(1).decode()
    sys.modules["aiohttp"] = package
    return True


def abandon(*dependents: str) -> None:
    """Drop a half-entered package, whatever was imported under it and the `dependents` (modules
    that imported from it), so that aiohttp can be imported as usual."""
    for name in [n for n in sys.modules if n == "aiohttp" or n.startswith("aiohttp.")]:
        del sys.modules[name]
    for name in dependents:
        sys.modules.pop(name, None)
