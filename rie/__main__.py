"""The `rie` command: a drop-in for the official emulator's CLI, plus three subcommands.

`rie event ...` (sample events), `rie invoke ...` (a client for a running rie) and `rie tune ...`
(power tuning, rie/dev/tune.py) are recognised only as the very first word, so every form of the
official emulator's command line (`rie [flags] [--] COMMAND ARGS...`) keeps its meaning, even for
a bootstrap named `event`, `invoke` or `tune` given after flags or `--`.
"""

from __future__ import annotations

import logging
import os
import sys

from rie.settings.errors import ConfigError
from rie.settings.load import load_all

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
SUBCOMMANDS = ("event", "invoke", "tune")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in SUBCOMMANDS:
        from rie.dev import cli  # the subcommands import neither aiohttp nor the emulator

        return cli.main(args)
    try:
        configs = load_all(args, os.environ)
    except ConfigError as exc:
        print(f"rie: {exc}", file=sys.stderr)
        return 2
    if configs[0].watch:
        from rie.dev.reload import available

        if not available():
            print(
                "rie: --watch needs watchfiles: pip install 'pyrie[watch]' (or pip install watchfiles)",
                file=sys.stderr,
            )
            return 2
    logging.basicConfig(
        level=_LEVELS[configs[0].log_level],
        format="%(asctime)s rie %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for warning in dict.fromkeys(w for config in configs for w in config.warnings):
        logging.getLogger("rie").warning("%s", warning)
    from rie.app import run  # aiohttp is imported only once the config is known to be good

    return run(configs)


if __name__ == "__main__":
    sys.exit(main())
