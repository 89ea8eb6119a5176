"""``mrzero deploy``: validate a bundle and install it into the store the server searches."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("mrzero.deploy")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="install a bundle where the server finds it",
        description="Validate BUNDLE (as mrzero bundle check) and copy it to STORE/bundles/NAME/SIGNATURE, "
        "where the server finds it by name (JSON parameters) or by Pulseq signature. A bundle "
        "with the same name and signature is replaced; an invalid bundle is refused.",
    )
    p.add_argument("bundle", help="bundle directory written by mrzero export")
    p.add_argument("--store", required=True, help="bundle store directory of the server")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.core.bundles import BundleError
    from mrzero.sequences.bundle import deploy_bundle

    try:
        target = deploy_bundle(args.bundle, args.store)
    except (BundleError, OSError) as exc:
        log.error("%s", exc)
        return 1
    print(f"deployed to {target}")
    return 0
