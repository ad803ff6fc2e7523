"""Zips unpacked as Lambda would: a function's deployment package (`--zip`, `zip` in a file) into
a temporary task root, and each `--layer` .zip. One mechanism for both.

Lambda's limits are checked before anything is written: 50 MB zipped, 250 MB unzipped. The sizes a
zip declares can lie (a zip bomb), so the bytes actually written are counted too, and an entry
that inflates past the size it declares is refused at once: what is written stays within what was
declared. Entries that would land outside the target (absolute paths, `..`, symlinks pointing out)
are refused. Whatever else makes a zip unusable (a bad CRC, an encrypted entry, an unknown
compression method, corrupt data, a name the file system cannot take) is one ConfigError naming the
file and the entry, and the partly written target is removed. A package's directory is removed
when the emulator exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import zipfile
import zlib

from rie.settings.errors import ConfigError

ZIPPED_LIMIT = 50 * 1024 * 1024  # direct upload of a .zip
UNZIPPED_LIMIT = 250 * 1024 * 1024  # code and layers, unzipped
MAX_ENTRIES = 100_000
# directories an entry may nest in: far beyond any real package, and short of what makes paths
# too long for the file system (a task root is itself some levels down)
MAX_DEPTH = 1000
_CHUNK = 1 << 16
# what a zip can hold that cannot be unpacked: each is refused with its reason
_UNPACK_ERRORS = (
    OSError,  # a name too long, a file where a directory must be, a full disk
    ValueError,  # a NUL in a symlink's target
    RuntimeError,  # an encrypted entry (RecursionError, a path too deep, is one too)
    NotImplementedError,  # a compression method zipfile does not know
    EOFError,  # data cut short
    zlib.error,  # corrupt deflate data
    zipfile.BadZipFile,  # a bad CRC, a broken header
)


def is_zip(path: str) -> bool:
    return path.lower().endswith(".zip") or zipfile.is_zipfile(path)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def unpack(path: str, unzipped_limit: int = UNZIPPED_LIMIT) -> str:
    """Unpack the package at `path` into a new temporary directory (removed at exit); its path."""
    root = tempfile.mkdtemp(prefix="rie-zip-")
    try:
        extract(path, root, unzipped_limit, "--zip")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    atexit.register(shutil.rmtree, root, True)
    return root


def extract(path: str, target: str, unzipped_limit: int, what: str) -> None:
    """Unpack the zip at `path` into the directory `target` (made if missing), within the
    limits; ConfigError naming `what` (the flag or key) and the file otherwise, and then
    `target` is removed."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if size > ZIPPED_LIMIT:
        raise ConfigError(
            f"{what}: {path} is {_mb(size)}, over Lambda's limit of {_mb(ZIPPED_LIMIT)} for a "
            "zipped deployment package (use layers, or an image)"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (*_UNPACK_ERRORS,) as exc:
        raise ConfigError(f"{what}: {path} is not a zip file: {exc}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise ConfigError(f"{what}: {path} has {len(entries)} entries, more than {MAX_ENTRIES}")
        declared = sum(e.file_size for e in entries)
        if declared > unzipped_limit:
            raise ConfigError(
                f"{what}: {path} unzips to {_mb(declared)}, over Lambda's limit of "
                f"{_mb(unzipped_limit)} for code and layers unzipped"
            )
        os.makedirs(target, exist_ok=True)
        try:
            _extract(archive, entries, target, unzipped_limit, path, what)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


def _within(root: str, target: str) -> bool:
    return target == root or target.startswith(root + os.sep)


def _outside(path: str, name: str, what: str) -> ConfigError:
    where = "the layer" if what == "--layer" else "the task root"
    return ConfigError(f"{what}: {path}: entry {name!r} would be written outside {where}")


def _inside(root: str, name: str, path: str, what: str) -> str:
    """The path of entry `name`, refused if it leaves the root as written (`..`, absolute)."""
    target = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or not _within(root, target):
        raise _outside(path, name, what)
    return target


def _resolves_inside(root: str, target: str, name: str, path: str, what: str) -> None:
    """Refuse `target` if, with the symlinks written so far followed, it leaves the root (a link
    to `.` then a link to `that/..` is inside as written, outside once resolved)."""
    if not _within(root, os.path.realpath(target)):
        raise _outside(path, name, what)


def _extract(
    archive: zipfile.ZipFile,
    entries: list[zipfile.ZipInfo],
    root: str,
    limit: int,
    path: str,
    what: str,
) -> None:
    root = os.path.realpath(root)
    written = 0
    for entry in entries:
        try:
            written = _extract_one(archive, entry, root, limit, path, what, written)
        except ConfigError:
            raise
        except _UNPACK_ERRORS as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, RecursionError):
                reason = "its path is too deep"
            shown = entry.filename if len(entry.filename) <= 80 else entry.filename[:77] + "..."
            raise ConfigError(f"{what}: {path}: cannot unpack entry {shown!r}: {reason}") from None


def _extract_one(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    root: str,
    limit: int,
    path: str,
    what: str,
    written: int,
) -> int:
    """Write one entry; the bytes written so far, this entry's included."""
    name = entry.filename
    if name.count("/") > MAX_DEPTH:
        raise ValueError(f"it nests more than {MAX_DEPTH} directories")
    target = _inside(root, name, path, what)
    mode = entry.external_attr >> 16
    _resolves_inside(root, os.path.dirname(target), name, path, what)
    _makedirs(root, target if entry.is_dir() else os.path.dirname(target))
    if entry.is_dir():
        return written
    _resolves_inside(root, target, name, path, what)  # an earlier entry may be a link at this name
    if stat.S_ISLNK(mode):
        if entry.file_size > 4096:
            raise ValueError("a symlink's target longer than 4096 bytes")
        link = archive.read(entry).decode("utf-8", "replace")
        _inside(root, os.path.join(os.path.dirname(name), link), path, what)
        os.symlink(link, target)
        try:
            _resolves_inside(root, target, name, path, what)
        except ConfigError:
            os.unlink(target)
            raise
        return written + len(link)
    with archive.open(entry) as src, open(target, "wb") as dst:
        left = entry.file_size
        while chunk := src.read(min(_CHUNK, left + 1)):
            left -= len(chunk)
            written += len(chunk)
            if left < 0:
                # what is written stays within what the entries declare (checked to be within
                # the limit), so a lying entry is refused before it fills the disk
                raise ConfigError(
                    f"{what}: {path}: entry {name!r} unzips to more than the "
                    f"{entry.file_size} bytes it declares (refused)"
                )
            if written > limit:
                raise ConfigError(
                    f"{what}: {path} unzips to more than {_mb(limit)}, over Lambda's limit "
                    "for code and layers unzipped"
                )
            dst.write(chunk)
    # permissions as packed (a bootstrap must stay executable); none recorded: rw-r--r--
    os.chmod(target, (mode & 0o777) or 0o644)
    return written


def _makedirs(root: str, directory: str) -> None:
    """`os.makedirs` one level at a time (it recurses once per missing level, and a zip can
    name thousands of them)."""
    rel = os.path.relpath(directory, root)
    if rel == ".":
        return
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        try:
            os.mkdir(current)
        except FileExistsError:
            if not os.path.isdir(current):
                raise NotADirectoryError(20, "a file is in the way of a directory") from None
