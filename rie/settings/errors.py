"""The one error of loading settings: a flag, variable or file that cannot be used.

Its own module so that every loader (flags, TOML, SAM, zips) can raise it without importing the
others.
"""


class ConfigError(ValueError):
    """A flag or variable that cannot be used; the message says which and why."""
