"""``mrzero pipelines``: the registered pipeline (config) names and the JSON parameters each declares."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipelines",
        help="list the pipelines a client can select by config name, with their JSON parameters",
        description="List the registered pipelines (the config names the server accepts) and the JSON "
        "parameters each accepts: name, type, default, allowed range or choices, help.",
    )
    p.add_argument("names", nargs="*", help="only these pipelines (default: all)")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="Markdown tables, as in docs/pipelines.md (generated from this)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.pipelines import registry
    from mrzero.pipelines.parameters import COMMON_PARAMETERS, PipelineParameters, parameter_docs

    try:
        specs = [registry.get(name) for name in args.names or registry.names()]
    except registry.UnknownPipelineError as exc:
        print(f"mrzero pipelines: {exc}", file=sys.stderr)
        return 2
    if args.markdown:
        print(_markdown("every pipeline", "", parameter_docs(PipelineParameters)))
    for spec in specs:
        default = " (default)" if spec.name == registry.DEFAULT_PIPELINE else ""
        docs = parameter_docs(spec.parameters)
        if args.markdown:
            own = [d for d in docs if d.name not in COMMON_PARAMETERS]
            print(_markdown(f"`{spec.name}`{default}", spec.description, own))
            continue
        print(f"{spec.name}{default}: {spec.description}")
        rows = [("parameter", "type", "default", "allowed", "help")]
        rows += [(d.name, d.type, d.default, d.allowed, d.help) for d in docs]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print(
                "  "
                + "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
                + "  "
                + row[4]
            )
    return 0


def _markdown(title: str, description: str, docs: list) -> str:
    lines = [f"#### {title}", ""]
    if description:
        lines += [description, ""]
    if not docs:
        return "\n".join([*lines, "No parameters of its own.", ""])
    lines += ["| parameter | type | default | allowed | help |", "| --- | --- | --- | --- | --- |"]
    for d in docs:
        cells = (f"`{d.name}`", d.type, d.default, d.allowed, d.help)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join([*lines, ""])
