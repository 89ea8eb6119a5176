"""``mrzero bundle check``: validate a bundle directory before it is deployed."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("mrzero.bundle")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="inspect bundles (mrzero bundle check BUNDLE)",
        description="Work with bundle directories written by mrzero export.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a bundle",
        description="Check that the Pulseq signature in protocol.json is the .seq file's, that the "
        "trajectory equals pypulseq's k-space of the file, that the head's weights load "
        "(safetensors, no unpickling) and that the pipeline is registered. Exit status 1 "
        "lists every problem.",
    )
    check.add_argument("bundle", help="bundle directory")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from mrzero.core.bundles import BundleError
    from mrzero.sequences.bundle import check_bundle

    try:
        protocol = check_bundle(args.bundle)
    except BundleError as exc:
        log.error("%s", exc)
        return 1
    print(
        f"bundle {protocol['name']} is valid: signature {protocol['signature']}, "
        f"pipeline {protocol['pipeline']}, {protocol['encoding']['n_samples']} samples"
    )
    return 0
