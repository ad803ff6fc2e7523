"""Layers as the function's /opt (rie/settings/layers.py): order, search paths, zips, the exec wrapper."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from rie.settings.layers import LayerError, Layers, check


def make_layer(root: Path, *dirs: str) -> Path:
    for d in dirs:
        (root / d).mkdir(parents=True)
    return root


def test_later_layers_come_first_in_search_paths(tmp_path: Path) -> None:
    a = make_layer(tmp_path / "a", "python", "bin", "lib", "extensions")
    b = make_layer(tmp_path / "b", "python/lib/python3.12/site-packages", "bin")
    layers = Layers.prepare(check([str(a), str(b)]))
    assert layers.python_paths() == [
        str(b / "python"),
        str(b / "python/lib/python3.12/site-packages"),
        str(a / "python"),
    ]
    env = layers.environment({"PATH": "/usr/bin", "PYTHONPATH": "/mine"})
    assert env["PATH"] == os.pathsep.join([str(b / "bin"), str(a / "bin"), "/usr/bin"])
    assert env["PYTHONPATH"].endswith(os.pathsep + "/mine")
    assert env["LD_LIBRARY_PATH"] == str(a / "lib")
    assert layers.extension_dirs() == [str(a / "extensions")]


def test_zip_layers_keep_executable_bits_and_are_removed(tmp_path: Path) -> None:
    z = tmp_path / "l.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("extensions/ext")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("python/mod.py", "X = 1\n")
    layers = Layers.prepare(check([str(z)]))
    (root,) = layers.roots
    assert os.access(os.path.join(root, "extensions", "ext"), os.X_OK)
    assert not os.access(os.path.join(root, "python", "mod.py"), os.X_OK)
    layers.cleanup()
    assert not os.path.exists(root)


def test_a_zip_may_not_write_outside_its_layer(tmp_path: Path) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../escaped", "x")
    with pytest.raises(LayerError, match="outside the layer"):
        Layers.prepare([str(z)])
    assert not (tmp_path / "escaped").exists()


def test_check(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="at most 5"):
        check([str(tmp_path)] * 6)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(LayerError, match=r"neither a directory nor a \.zip"):
        check([str(tmp_path / "f.txt")])
