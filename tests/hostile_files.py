"""Files a hostile or careless user hands rie's loaders: zips that cannot be unpacked, TOML that
is not UTF-8, templates that loop, have the wrong shapes or expand without end. Each builder
writes one into a directory and returns its path; shared by the end-to-end refusals and the
loaders' fuzzer."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

HANDLER = "def handler(event, context):\n    return event\n"


def _patch_headers(path: Path, local: dict[int, bytes], central: dict[int, bytes]) -> None:
    """Overwrite fields of every local header (offsets from `PK\\3\\4`) and central directory
    entry (offsets from `PK\\1\\2`)."""
    data = bytearray(path.read_bytes())
    for sig, fields in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = data.find(sig)
        while at != -1:
            for offset, value in fields.items():
                data[at + offset : at + offset + len(value)] = value
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))


def _zip(tmp: Path, name: str, entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    path = tmp / name
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("app.py", HANDLER)
        for entry, data in entries.items():
            z.writestr(entry, data)
    return path


def bad_crc(tmp: Path) -> Path:
    path = _zip(tmp, "bad_crc.zip", {"data.txt": b"hello world " * 10})
    data = bytearray(path.read_bytes())
    at = data.find(b"hello world")
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def lying_sizes(tmp: Path, inflated: int = 260 * 1024 * 1024) -> Path:
    """An entry that declares 1 KB and inflates to `inflated` bytes of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    raw = b"".join(comp.compress(block) for _ in range(inflated >> 20)) + comp.flush()
    crc = 0
    for _ in range(inflated >> 20):
        crc = zlib.crc32(block, crc)
    name = b"bomb.bin"
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(raw), 1024, len(name), 0
    )
    central_at = len(local) + len(name) + len(raw)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(raw), 1024, len(name), 0, 0, 0, 0, 0o644 << 16, 0,
    )  # fmt: skip
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), central_at, 0
    )
    path = tmp / "lying_sizes.zip"
    path.write_bytes(local + name + raw + central + name + end)
    return path


def encrypted(tmp: Path) -> Path:
    path = _zip(tmp, "encrypted.zip", {})
    _patch_headers(path, {6: b"\x01\x00"}, {8: b"\x01\x00"})
    return path


def method_99(tmp: Path) -> Path:
    path = _zip(tmp, "method_99.zip", {})
    _patch_headers(path, {8: b"\x63\x00"}, {10: b"\x63\x00"})
    return path


def bad_deflate(tmp: Path) -> Path:
    path = _zip(tmp, "bad_deflate.zip", {"data.txt": bytes(range(256)) * 40}, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.find(b"data.txt") + len(b"data.txt")
    data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def file_as_directory(tmp: Path) -> Path:
    return _zip(tmp, "file_as_dir.zip", {"lib": b"a file", "lib/module.py": b"x = 1\n"})


def nul_in_symlink(tmp: Path) -> Path:
    path = tmp / "nul_link.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("app.py", HANDLER)
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, b"app\x00.py")
    return path


def deep_path(tmp: Path, levels: int = 2000) -> Path:
    return _zip(tmp, "deep.zip", {"d/" * levels + "f.txt": b"deep"})


def long_name(tmp: Path) -> Path:
    return _zip(tmp, "long_name.zip", {"x" * 300 + ".py": b"x = 1\n"})


ZIPS: dict[str, Callable[[Path], Path]] = {
    "bad CRC": bad_crc,
    "sizes that lie": lying_sizes,
    "encrypted entry": encrypted,
    "compression method 99": method_99,
    "bad deflate data": bad_deflate,
    "a file used as a directory": file_as_directory,
    "NUL in a symlink target": nul_in_symlink,
    "2,000-level path": deep_path,
    "300-character name": long_name,
}


def toml_not_utf8(tmp: Path) -> Path:
    (tmp / "app.py").write_text(HANDLER)
    path = tmp / "latin1.toml"
    path.write_bytes(
        '[functions.fn]\nhandler = "app.handler"\ndescription = "caf\xe9"\n'.encode("latin-1")
    )
    return path


_SAM_HEAD = "Transform: AWS::Serverless-2016-10-31\n"
_SAM_FN = (
    "  Fn:\n    Type: AWS::Serverless::Function\n"
    "    Properties:\n      Handler: app.handler\n      Runtime: python3.12\n"
)


def _template(tmp: Path, name: str, body: str) -> Path:
    (tmp / "app.py").write_text(HANDLER)
    path = tmp / name
    path.write_text(_SAM_HEAD + body)
    return path


def condition_cycle(tmp: Path) -> Path:
    return _template(
        tmp,
        "cycle.yaml",
        "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\n"
        "Resources:\n" + _SAM_FN + "    Condition: A\n",
    )


def properties_as_list(tmp: Path) -> Path:
    return _template(
        tmp,
        "props_list.yaml",
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      - Handler: app.handler\n",
    )


def resources_as_list(tmp: Path) -> Path:
    return _template(
        tmp, "resources_list.yaml", "Resources:\n  - Type: AWS::Serverless::Function\n"
    )


def alias_bomb(tmp: Path, levels: int = 9, width: int = 10) -> Path:
    lines = ['Parameters:\n  P:\n    Type: String\n    Default: "a"\nMappings:\n  M:\n']
    lines.append("    l0: &l0 [!Join ['', [lol]]]\n")
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"    l{i}: &l{i} [!Join ['', [{refs}]]]\n")
    body = (
        "".join(lines) + "Resources:\n" + _SAM_FN + f"      Description: !Join ['', *l{levels}]\n"
    )
    return _template(tmp, "alias_bomb.yaml", body)


TEMPLATES: dict[str, Callable[[Path], Path]] = {
    "!Condition cycle": condition_cycle,
    "Properties as a list": properties_as_list,
    "Resources as a list": resources_as_list,
    "YAML alias bomb": alias_bomb,
}
