"""``mrzero export``: a checkpoint (or a builder's target sequence) to a deployable bundle directory."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("mrzero.export")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained sequence as a bundle: .seq, test report, protocol, trajectory, head",
        description="Write a bundle directory from a training checkpoint (or from one of the papers' "
        "target sequences with --sequence): the Pulseq file the scanner runs, its test report, "
        "protocol.json, the k-space trajectory, the head's weights and the training figure. "
        "The file respects the hardware limits: events that need more time are stretched and "
        "listed; a sequence that no stretching can fit (gradient or B1 above the limit) is "
        "refused with the event named. Units here: ms, mT/m, T/m/s, uT, mm.",
    )
    p.add_argument(
        "checkpoint", nargs="?", help="checkpoint file (mrzero.sequences.checkpoint.save_checkpoint)"
    )
    p.add_argument(
        "--sequence",
        choices=("gre", "radial", "rare", "t1", "mgre"),
        help="instead of a checkpoint: a builder's target sequence with its default protocol",
    )
    p.add_argument("--matrix", type=int, default=64, help="matrix of --sequence (default 64)")
    p.add_argument("-o", "--out", required=True, help="bundle directory to create (new or empty)")
    p.add_argument("--name", help="bundle name (default: the checkpoint's or the sequence's name)")
    p.add_argument("--pipeline", help="reconstruction pipeline (default: checkpoint metadata, or cartesian)")
    p.add_argument(
        "--head-output",
        metavar="QUANTITY:UNITS",
        help="what the head's maps are, for the image meta, e.g. T1:s (default: head output, a.u.)",
    )
    p.add_argument("--hardware", default="default", help="hardware preset: default (conservative) or prisma")
    p.add_argument("--max-grad", type=float, help="override: maximum gradient per axis, mT/m")
    p.add_argument("--max-slew", type=float, help="override: maximum slew rate per axis, T/m/s")
    p.add_argument("--max-b1", type=float, help="override: maximum RF amplitude, uT")
    p.add_argument("--rf-shape", choices=("block", "sinc"), help="RF pulse shape (default: sequence hint)")
    p.add_argument("--rf-duration", type=float, help="RF pulse duration, ms (default: sequence hint, 1 ms)")
    p.add_argument("--rf-block", type=float, default=2.0, help="fixed RF block length, ms (default 2)")
    p.add_argument("--tbw", type=float, help="sinc time-bandwidth product (default 4)")
    p.add_argument("--slice-thickness", type=float, help="sinc slice thickness, mm")
    p.add_argument("--dwell", type=float, help="ADC dwell for ADC events of zero duration, ms (default 0.08)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mrzero.core.bundles import BundleError
    from mrzero.sequences.bundle import write_bundle
    from mrzero.sequences.checkpoint import Checkpoint, CheckpointError, load_checkpoint
    from mrzero.sequences.pulseq.export import ExportError, ExportOptions
    from mrzero.sequences.pulseq.system import hardware

    if (args.checkpoint is None) == (args.sequence is None):
        log.error("give either a CHECKPOINT file or --sequence NAME")
        return 2
    overrides = {
        k: v
        for k, v in {
            "max_grad": args.max_grad and args.max_grad * 1e-3,
            "max_slew": args.max_slew,
            "max_b1": args.max_b1 and args.max_b1 * 1e-6,
        }.items()
        if v is not None
    }
    ms = {
        k: (v * 1e-3 if v is not None else None)
        for k, v in {
            "rf_duration": args.rf_duration,
            "dwell": args.dwell,
            "slice_thickness": args.slice_thickness,
        }.items()
    }
    try:
        limits = hardware(args.hardware, **overrides)
        options = ExportOptions(
            rf_shape=args.rf_shape,
            rf_duration=ms["rf_duration"],
            time_bw_product=args.tbw,
            slice_thickness=ms["slice_thickness"],
            rf_block=args.rf_block * 1e-3,
            dwell=ms["dwell"],
        )
        if args.checkpoint:
            checkpoint = load_checkpoint(args.checkpoint)
        else:
            from mrzero.sequences.builders import BUILDERS

            checkpoint = Checkpoint(BUILDERS[args.sequence](matrix=args.matrix))
        if args.head_output:
            quantity, _, units = args.head_output.partition(":")
            if not quantity or not units:
                raise ValueError(f"--head-output must be QUANTITY:UNITS, e.g. T1:s, got {args.head_output!r}")
            checkpoint.metadata["head_output"] = {"quantity": quantity, "units": units}
        protocol = write_bundle(
            checkpoint,
            args.out,
            name=args.name,
            pipeline=args.pipeline,
            limits=limits,
            options=options,
            source=args.checkpoint,
        )
    except (CheckpointError, ExportError, BundleError, ValueError) as exc:
        log.error("%s", str(exc).splitlines()[0])  # torch's unpickling errors run to a page
        return 1
    print(f"bundle {protocol['name']} -> {args.out}")
    print(f"  signature {protocol['signature']}, pipeline {protocol['pipeline']}")
    print(
        f"  duration {protocol['duration_s']:.3f} s, TE {protocol['te_ms']:.3f} ms, "
        f"TR {protocol['tr_ms']:.3f} ms"
    )
    print(
        f"  SAR proxy {protocol['sar_proxy_rad2']:.3f} rad^2, "
        f"mean RF power {protocol['mean_rf_power_hz2']:.1f} Hz^2"
    )
    print(f"  hardware {limits.name}: {len(protocol['stretched_events'])} stretched event(s)")
    for stretch in protocol["stretched_events"]:
        print(f"    {stretch}")
    return 0
