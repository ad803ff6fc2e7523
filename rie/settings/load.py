"""Every function one emulator serves, from the command line and the files it names.

The one entry point of settings: the command line alone describes one function (`config`);
`--config` / `--template` describe several (`project`), with the command line's function flags
applied to each. Kept apart from `config` so that the flag parser never imports the file loaders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rie.settings.config import Config, build_parser, from_args


def load_all(argv: Sequence[str], env: Mapping[str, str]) -> list[Config]:
    """Every function to serve: the one of the command line, or those of --config / --template
    (then the command line's function flags apply to each and win over the file)."""
    a = build_parser().parse_args(list(argv))
    if not (a.config or a.template):
        return [from_args(a, env)]
    from rie.settings import project  # TOML and YAML are parsed only when a file is given

    return project.load(a, from_args(a, env, one_function=False), env)
