"""Routes of the HTTP front: `METHOD /path/{param}/{rest+}`, `ANY /path` and `$default`, parsed
when settings are loaded (so a bad route is refused at start-up) and matched per request, by API
Gateway's precedence. Pure and standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    """`METHOD /path/{param}/{rest+}`, `ANY /path`, or `$default` (matches every request)."""

    method: str  # upper case, or "ANY"
    path: str  # the template as given, e.g. /items/{id}
    segments: tuple[str, ...] = ()
    default: bool = False

    @property
    def key(self) -> str:
        return "$default" if self.default else f"{self.method} {self.path}"

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1].endswith("+}")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when `method path` matches this route, else None."""
        if self.default:
            return {}
        if self.method != "ANY" and self.method != method:
            return None
        parts = _split_path(path)
        params: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg.startswith("{") and seg.endswith("+}"):
                rest = parts[i:]
                if not rest:
                    return None  # a greedy parameter takes at least one segment
                params[seg[1:-2]] = "/".join(rest)
                return params
            if i >= len(parts):
                return None
            if seg.startswith("{") and seg.endswith("}"):
                params[seg[1:-1]] = parts[i]
            elif seg != parts[i]:
                return None
        return params if len(parts) == len(self.segments) else None

    def specificity(self) -> tuple[int, int, int, int]:
        # API Gateway prefers literal segments over parameters, parameters over a greedy one,
        # and a route with its own method over ANY
        literal = sum(1 for s in self.segments if not s.startswith("{"))
        return (
            0 if self.default else 1,
            literal,
            0 if self.greedy else 1,
            0 if self.method == "ANY" else 1,
        )


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})


def _split_path(path: str) -> list[str]:
    return [p for p in path.split("/") if p != ""]


def parse_route(text: str) -> Route:
    """A route from `METHOD /path` (ValueError with the reason when it is not one)."""
    text = text.strip()
    if text == "$default":
        return Route("ANY", "$default", default=True)
    method, _, path = text.partition(" ")
    method, path = method.upper(), path.strip()
    if method not in _METHODS:
        raise ValueError(f"route {text!r}: the method must be one of {', '.join(sorted(_METHODS))}")
    if not path.startswith("/"):
        raise ValueError(f"route {text!r}: the path must start with '/'")
    segments = tuple(_split_path(path))
    names: set[str] = set()
    for i, seg in enumerate(segments):
        if "{" in seg or "}" in seg:
            if not (seg.startswith("{") and seg.endswith("}")) or len(seg) < 3:
                raise ValueError(f"route {text!r}: a parameter is a whole segment, like {{id}}")
            name = seg[1:-2] if seg.endswith("+}") else seg[1:-1]
            if seg.endswith("+}") and i != len(segments) - 1:
                raise ValueError(f"route {text!r}: a greedy {{name+}} must be the last segment")
            if not name or name in names:
                raise ValueError(f"route {text!r}: parameter names must be given and distinct")
            names.add(name)
    return Route(method, path, segments)


def match_route(
    routes: Iterable[Route], method: str, path: str
) -> tuple[Route, dict[str, str]] | None:
    """The most specific route matching the request, with its path parameters."""
    best: tuple[Route, dict[str, str]] | None = None
    for route in routes:
        params = route.match(method, path)
        if params is None:
            continue
        if best is None or route.specificity() > best[0].specificity():
            best = (route, params)
    return best
