"""Layers: the function's `/opt`, built from `--layer DIR|ZIP` in order, and what it adds to the
environment of the runtime and its extensions.

On Lambda, layers are unpacked into `/opt` one after the other (a later layer's file wins);
the managed Python runtime puts `/opt/python` and `/opt/python/lib/python3.X/site-packages` on
`sys.path` after the task root, `/opt/bin` joins `PATH`, `/opt/lib` joins `LD_LIBRARY_PATH`, and
every executable in `/opt/extensions` starts as an external extension. Here each layer stays
where it is (a directory) or is unpacked once into a temporary directory of this emulator (a .zip);
the search paths list the layers from the last to the first, which gives the same "later layer
wins" as unpacking them over each other.

Invariant: a temporary directory made here is removed by `Layers.cleanup` (called at exit).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_LAYERS = 5
EXEC_WRAPPER = "AWS_LAMBDA_EXEC_WRAPPER"


class LayerError(ValueError):
    """A layer that cannot be used; the message says which and why."""


def check(paths: Sequence[str]) -> tuple[str, ...]:
    """Validate `--layer` values at start-up (count, existence, kind); absolute paths back."""
    if len(paths) > MAX_LAYERS:
        raise LayerError(f"--layer: at most {MAX_LAYERS} layers, got {len(paths)}")
    import zipfile  # only when layers are given: it costs start-up time

    checked = []
    for path in paths:
        full = os.path.abspath(path)
        if os.path.isdir(full) or (os.path.isfile(full) and zipfile.is_zipfile(full)):
            checked.append(full)
        else:
            raise LayerError(f"--layer: {path} is neither a directory nor a .zip file")
    return tuple(checked)


@dataclass
class Layers:
    roots: list[str] = field(default_factory=list)  # in the order given
    _tmp: str | None = None

    @classmethod
    def prepare(cls, paths: Sequence[str]) -> Layers:
        import tempfile

        from rie.settings.errors import ConfigError
        from rie.settings.package import UNZIPPED_LIMIT, extract  # the one way zips are unpacked

        layers = cls()
        for path in paths:
            if os.path.isdir(path):
                layers.roots.append(path)
                continue
            if layers._tmp is None:
                layers._tmp = tempfile.mkdtemp(prefix="rie-layers-")
            target = os.path.join(layers._tmp, str(len(layers.roots)))
            try:
                extract(path, target, UNZIPPED_LIMIT, "--layer")
            except ConfigError as exc:
                layers.cleanup()
                raise LayerError(str(exc)) from None
            layers.roots.append(target)
        return layers

    def cleanup(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def _existing(self, *parts: str) -> list[str]:
        found = []
        for root in reversed(self.roots):  # a later layer wins
            path = os.path.join(root, *parts)
            if os.path.isdir(path):
                found.append(path)
        return found

    def python_paths(self) -> list[str]:
        import glob

        paths = []
        for root in reversed(self.roots):
            python = os.path.join(root, "python")
            if os.path.isdir(python):
                paths.append(python)
                paths.extend(
                    sorted(glob.glob(os.path.join(python, "lib", "python3*", "site-packages")))
                )
        return paths

    def extension_dirs(self) -> list[str]:
        return [
            os.path.join(root, "extensions")
            for root in self.roots
            if os.path.isdir(os.path.join(root, "extensions"))
        ]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The variables the layers change: PYTHONPATH, PATH and LD_LIBRARY_PATH."""
        changes: dict[str, str] = {}
        for var, paths in (
            ("PYTHONPATH", self.python_paths()),
            ("PATH", self._existing("bin")),
            ("LD_LIBRARY_PATH", self._existing("lib")),
        ):
            if paths:
                current = base.get(var, "")
                changes[var] = os.pathsep.join([*paths, *([current] if current else [])])
        return changes
