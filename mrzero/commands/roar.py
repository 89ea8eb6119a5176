"""``mrzero roar``: train the RoAR U-Net and reproduce the paper's Table 1 and Figure 4."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("mrzero.roar")

#: Test sets of ``mrzero roar eval`` and their headings.
TEST_SETS = {
    "held-out": "Held-out anatomy: ICBM slabs below (z -30..+2 mm) and above (+34..+66 mm) the training slab",
    "warped": "Warps of the training anatomy (the training slab, subjects held out)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "roar",
        help="RoAR R2*/S0 mapping: train the U-Net, evaluate against NLLS",
        description="RoAR: a U-Net that maps multi-echo GRE magnitudes to S0 and R2*, "
        "trained self-supervised through S0 exp(-R2* t) F(t) (docs/roar.md).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = actions.add_parser(
        "train",
        help="train on synthetic subjects from a YAML config",
        description="Train on synthetic subjects. CONFIG is YAML with keys mode "
        "(self|denoise|supervised), output, epochs, batch, lr, seed, device, "
        "data {size, subjects, val, test, seed, copies, snr, f, scan}, "
        "model {width, depth, ...}; see docs/roar.md.",
    )
    t.add_argument("config", type=Path, help="YAML training configuration")
    t.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the config's device)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    t.set_defaults(func=run_train)
    e = actions.add_parser(
        "eval",
        help="Table 1 (R2* RE at SNR 5/10/15 with 95%% CI) and a Fig. 4 PNG",
        description="Evaluate NLLS, RoAR and supervised models on the synthetic test "
        "subjects of the RoAR weights' training split.",
    )
    e.add_argument(
        "--roar",
        type=Path,
        nargs="+",
        required=True,
        help="self-supervised RoAR weights (.safetensors), one per training seed",
    )
    e.add_argument(
        "--supervised",
        type=Path,
        nargs="*",
        default=[],
        help="supervised weights (.safetensors), one per training seed",
    )
    e.add_argument(
        "--test",
        nargs="+",
        choices=list(TEST_SETS),
        default=list(TEST_SETS),
        help="test subjects: held-out anatomy (ICBM slabs above and below the training slab) and/or "
        "warps of the training anatomy (default: both)",
    )
    e.add_argument("--seeds", type=int, default=3, help="noise seeds (>= 3 for a confidence interval)")
    e.add_argument("--snr", type=float, nargs="+", default=[5.0, 10.0, 15.0], help="test SNRs")
    e.add_argument("--out", type=Path, default=Path("runs/roar-eval"), help="output folder")
    e.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    e.set_defaults(func=run_eval)
    b = actions.add_parser(
        "bundle",
        help="package trained weights as a deployable bundle (pipeline roar)",
        description="Write a bundle directory (mrzero bundle check / mrzero deploy) holding the weights "
        "as its head and the 2D multi-echo GRE .seq file of the network's echo times, so that the "
        "roar pipeline finds the network in a bundle store by name or by the scan's Pulseq signature.",
    )
    b.add_argument("weights", type=Path, help="weights written by mrzero roar train (model.safetensors)")
    b.add_argument("-o", "--out", type=Path, required=True, help="bundle directory to create (new or empty)")
    b.add_argument("--name", default="roar_small", help="bundle name (default %(default)s)")
    b.add_argument("--matrix", type=int, default=64, help="mGRE .seq matrix (default %(default)s)")
    b.set_defaults(func=run_bundle)


def run_train(args: argparse.Namespace) -> int:
    from mrzero.core.device import DeviceError, select_device
    from mrzero.core.training import TrainingError, init_distributed, shutdown_distributed
    from mrzero.pipelines.roar.train import load_config, train

    cfg = load_config(args.config)
    if args.device is not None:
        cfg.device = args.device
    try:
        ranks, _ = init_distributed(select_device(cfg.device))
        try:
            summary = train(cfg, progress=not args.no_progress, ranks=ranks)
        finally:
            shutdown_distributed()
    except (DeviceError, TrainingError) as exc:
        log.error("%s", exc)
        print(f"mrzero roar train: {exc}")
        return 2
    if ranks.main:
        print(
            f"best validation loss {summary['best_val_loss']:.4g} (epoch {summary['best_epoch']}); "
            f"weights {summary['weights']}"
        )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from mrzero.pipelines.roar.evaluate import (
        arlo_method,
        constant_slice_method,
        constant_tissue_method,
        figure,
        network_method,
        nlls_method,
        table,
        training_maps,
    )
    from mrzero.pipelines.roar.synthetic import brain_anatomy, heldout_anatomy, split_indices
    from mrzero.pipelines.roar.weights_file import load_weights

    loaded = {
        name: [load_weights(p) for p in paths]
        for name, paths in (("RoAR", args.roar), ("Supervised", args.supervised))
        if paths
    }
    data = loaded["RoAR"][0][2]["config"]["data"]
    # what makes the test subjects; the SNR range, copies and F of training do not (weights from
    # before the scan choice were trained on the slice scan)
    split_keys = ("size", "subjects", "val", "test", "seed", "scan")

    def split_of(d: dict) -> tuple:
        return tuple(d.get(k, "slice" if k == "scan" else None) for k in split_keys)

    for name, models in loaded.items():
        for _, _, info in models:
            if split_of(info["config"]["data"]) != split_of(data):
                raise SystemExit(
                    f"{name} weights were trained on different synthetic data ({info['config']['data']}) "
                    f"than the first RoAR weights ({data}): the test split would differ"
                )
    te = loaded["RoAR"][0][1]
    scan = split_of(data)[-1]
    split = split_indices(data["subjects"], data["val"], data["test"], data["seed"])
    anatomy = brain_anatomy(data["size"])
    half = max(1, len(split["test"]) // 2)
    inferior = heldout_anatomy(data["size"], "inferior")
    cohorts = {
        "held-out": [
            (inferior, split["test"][:half]),
            (heldout_anatomy(data["size"], "superior"), split["test"][half:] or split["test"][:half]),
        ],
        "warped": [(anatomy, split["test"])],
    }
    log.info("constant baselines from the %d training subjects", len(split["train"]))
    maps = training_maps(anatomy, split["train"], data["seed"])
    methods = {
        "NLLS with F": nlls_method(te),
        "NLLS without F": nlls_method(te, use_f=False),
        "ARLO with F": arlo_method(te),
        "constant per tissue": constant_tissue_method(maps),
        "constant per slice": constant_slice_method(maps),
    }
    methods.update({name: network_method([m for m, _, _ in models]) for name, models in loaded.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    texts, values = [], {}
    for which in args.test:
        log.info(
            "evaluating %s on %s test subjects at SNR %s over %d seeds",
            ", ".join(methods),
            which,
            args.snr,
            args.seeds,
        )
        result = table(
            cohorts[which],
            methods,
            tuple(args.snr),
            args.seeds,
            data["seed"],
            progress=not args.no_progress,
            scan=scan,
        )
        texts.append(f"### {TEST_SETS[which]}\n\n{result.markdown()}\n")
        values[which] = json.loads(result.to_json())
    (args.out / "table1.md").write_text("\n".join(texts))
    (args.out / "table1.json").write_text(json.dumps(values, indent=1))
    figure(
        inferior,
        split["test"][0],
        methods_for_figure(methods),
        args.out / "figure4.png",
        data_seed=data["seed"],
        scan=scan,
    )
    print("\n".join(texts))
    print(f"wrote {args.out / 'table1.md'}, {args.out / 'table1.json'}, {args.out / 'figure4.png'}")
    return 0


def methods_for_figure(methods: dict) -> dict:
    """NLLS with F and the networks: the maps the paper's Fig. 4 shows."""
    return {k: v for k, v in methods.items() if k in ("NLLS with F", "RoAR", "Supervised")}


def run_bundle(args: argparse.Namespace) -> int:
    from mrzero.core.bundles import BundleError
    from mrzero.roar_bundle import write_roar_bundle

    try:
        protocol = write_roar_bundle(args.weights, args.out, name=args.name, matrix=args.matrix)
    except (BundleError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    print(
        f"bundle {protocol['name']} -> {args.out}: signature {protocol['signature']}, "
        f"echo times {protocol['head']['config']['te_ms']} ms, weights sha256 {protocol['head']['sha256']}"
    )
    return 0
