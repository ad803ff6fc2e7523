"""The `rie` command: a drop-in for the official emulator's CLI."""

from __future__ import annotations

import logging
import os
import sys

from .config import ConfigError, load

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def main(argv: list[str] | None = None) -> int:
    try:
        config = load(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"rie: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=_LEVELS[config.log_level],
        format="%(asctime)s rie %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for warning in config.warnings:
        logging.getLogger("rie").warning("%s", warning)
    from .app import run  # aiohttp is imported only once the config is known to be good

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
