"""``mrzero pipelines``: list the registered pipeline (config) names."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipelines", help="list the pipelines a client can select by config name",
                       description="List the registered pipelines (the config names the server accepts).")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.pipelines import registry

    for name in registry.names():
        default = " (default)" if name == registry.DEFAULT_PIPELINE else ""
        print(f"{name:20s} {registry.get(name).description}{default}")
    return 0
