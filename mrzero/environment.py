"""Option defaults from environment variables: containers, systemd units and Kubernetes
configure a command this way, and the command line still overrides them.

An option backed by a variable has ``default=None`` in argparse, so that :func:`resolve` can
tell "not given" from any real value; its help names the variable. An empty variable counts as
unset. A value that does not parse is a :class:`BadEnvironment` naming the variable.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class BadEnvironment(ValueError):
    """An environment variable holds a value its option does not accept."""


@dataclass(frozen=True)
class EnvOption:
    """Option ``dest`` takes its default from ``variable``, parsed like the command line's value."""

    dest: str
    variable: str
    parse: Callable[[str], Any]
    default: Any

    def help(self, text: str) -> str:
        """``text`` plus where the default comes from, for ``--help``."""
        return f"{text} (env {self.variable}; default {'none' if self.default is None else self.default})"


def resolve(
    args: argparse.Namespace, options: Iterable[EnvOption], environ: Mapping[str, str] = os.environ
) -> None:
    """Set every option not given on the command line from its variable, else its default."""
    for option in options:
        if getattr(args, option.dest) is not None:
            continue
        raw = environ.get(option.variable, "").strip()
        if not raw:
            setattr(args, option.dest, option.default)
            continue
        try:
            value = option.parse(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise BadEnvironment(f"{option.variable}={raw!r}: {exc}") from None
        setattr(args, option.dest, value)
