"""Deployment packages: a function's .zip, unpacked as Lambda would, into a temporary task root.

Lambda's limits are checked before anything is written: 50 MB zipped, 250 MB unzipped. The sizes a
zip declares can lie (a zip bomb), so the bytes actually written are counted too and extraction
stops past the limit. Entries that would land outside the task root (absolute paths, `..`,
symlinks pointing out) are refused. The directory is removed when the emulator exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import zipfile

from rie.settings.errors import ConfigError

ZIPPED_LIMIT = 50 * 1024 * 1024  # direct upload of a .zip
UNZIPPED_LIMIT = 250 * 1024 * 1024  # code and layers, unzipped
MAX_ENTRIES = 100_000
_CHUNK = 1 << 16


def is_zip(path: str) -> bool:
    return path.lower().endswith(".zip") or zipfile.is_zipfile(path)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def unpack(path: str, unzipped_limit: int = UNZIPPED_LIMIT) -> str:
    """Unpack the package at `path` into a new temporary directory (removed at exit); its path."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ConfigError(f"--zip: cannot read {path}: {exc.strerror}") from None
    if size > ZIPPED_LIMIT:
        raise ConfigError(
            f"--zip: {path} is {_mb(size)}, over Lambda's limit of {_mb(ZIPPED_LIMIT)} for a "
            "zipped deployment package (use layers, or an image)"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"--zip: {path} is not a zip file: {exc}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise ConfigError(f"--zip: {path} has {len(entries)} entries, more than {MAX_ENTRIES}")
        declared = sum(e.file_size for e in entries)
        if declared > unzipped_limit:
            raise ConfigError(
                f"--zip: {path} unzips to {_mb(declared)}, over Lambda's limit of "
                f"{_mb(unzipped_limit)} for code and layers unzipped"
            )
        root = tempfile.mkdtemp(prefix="rie-zip-")
        atexit.register(shutil.rmtree, root, True)
        try:
            _extract(archive, entries, root, unzipped_limit, path)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return root


def _within(root: str, target: str) -> bool:
    return target == root or target.startswith(root + os.sep)


def _outside(path: str, name: str) -> ConfigError:
    return ConfigError(f"--zip: {path}: entry {name!r} would be written outside the task root")


def _inside(root: str, name: str, path: str) -> str:
    """The path of entry `name`, refused if it leaves the root as written (`..`, absolute)."""
    target = os.path.normpath(os.path.join(root, name))
    if os.path.isabs(name) or not _within(root, target):
        raise _outside(path, name)
    return target


def _resolves_inside(root: str, target: str, name: str, path: str) -> None:
    """Refuse `target` if, with the symlinks written so far followed, it leaves the root (a link
    to `.` then a link to `that/..` is inside as written, outside once resolved)."""
    if not _within(root, os.path.realpath(target)):
        raise _outside(path, name)


def _extract(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], root: str, limit: int, path: str
) -> None:
    root = os.path.realpath(root)
    written = 0
    for entry in entries:
        name = entry.filename
        target = _inside(root, name, path)
        mode = entry.external_attr >> 16
        _resolves_inside(root, os.path.dirname(target), name, path)
        if entry.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        _resolves_inside(root, target, name, path)  # an earlier entry may be a link at this name
        if stat.S_ISLNK(mode):
            link = archive.read(entry).decode("utf-8", "replace")
            _inside(root, os.path.join(os.path.dirname(name), link), path)
            os.symlink(link, target)
            try:
                _resolves_inside(root, target, name, path)
            except ConfigError:
                os.unlink(target)
                raise
            continue
        with archive.open(entry) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ConfigError(
                        f"--zip: {path} unzips to more than {_mb(limit)}, over Lambda's limit "
                        "for code and layers unzipped (its entries declare less: refused)"
                    )
                dst.write(chunk)
        # permissions as packed (a bootstrap must stay executable); none recorded: rw-r--r--
        os.chmod(target, (mode & 0o777) or 0o644)
