"""``mrzero train RECIPE``: learn a sequence (and head) from a recipe; checkpoints, reports, summary.

Under ``torchrun --nproc_per_node N`` (one node or many through its rendezvous) the command
trains data-parallel: each rank simulates its share of every batch of phantoms, gradients are
summed with ``torch.distributed`` (gloo on CPU, NCCL on CUDA) and rank 0 writes every file."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("mrzero.train")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="learn a sequence (and reconstruction head) from a training recipe",
        description="Run an MRzero training recipe (YAML, TOML or JSON; or the name of a shipped recipe: "
        "gre_from_zero, gre_sar, rare_sar, sparse_synthetic, mask_target, radial_vfa, "
        "t1_mapping). Writes OUT/checkpoint.pt and OUT/resume.pt every N iterations, "
        "report rows OUT/report/iter_*.png, and at the end OUT/final.pt (ready for "
        "'mrzero export'), OUT/report/summary.png/.html, OUT/history.json and "
        "OUT/hardware_check.json (the final sequence exported within the recipe's hardware "
        "limits; a stretched event fails the recipe: exit status 3). See docs/training.md.",
    )
    p.add_argument("recipe", help="recipe file (.yaml/.yml/.toml/.json) or shipped recipe name")
    p.add_argument("--iterations", type=int, default=None, help="iterations (default: the recipe's)")
    p.add_argument(
        "--device",
        default=None,
        help="torch device: auto, cpu, cuda or cuda:N (default: the recipe's); under torchrun "
        "cuda means cuda:LOCAL_RANK on every rank",
    )
    p.add_argument("-o", "--out", default=None, help="output directory (default: train-RECIPE_NAME)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (default 0: torch's choice); 1 is often several times faster "
        "on a shared or busy machine, where threads wait for each other",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mrzero.core.device import DeviceError, select_device
    from mrzero.core.training import init_distributed, shutdown_distributed
    from mrzero.sequences.training import RecipeError, Trainer, TrainingError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
        if args.iterations is not None and args.iterations < 1:
            raise RecipeError(f"--iterations must be positive, got {args.iterations}")
        if args.threads < 0:
            raise RecipeError(f"--threads must be 0 (torch's choice) or positive, got {args.threads}")
        if args.threads:
            torch.set_num_threads(args.threads)
        ranks, _ = init_distributed(select_device(args.device or recipe.device))
        try:
            if not ranks.main:
                logging.getLogger("mrzero").setLevel(logging.WARNING)  # one rank reports
            trainer = Trainer(
                recipe,
                args.out or f"train-{recipe.name}",
                iterations=args.iterations,
                progress=not args.no_progress,
                ranks=ranks,
            )
            if args.resume:
                trainer.resume()
            result = trainer.run()
        finally:
            shutdown_distributed()
    except (RecipeError, TrainingError, DeviceError) as exc:
        log.error("%s", exc)
        print(f"mrzero train: {exc}")
        return 2
    if not ranks.main:
        return 0
    last = result.history[-1]
    print(
        f"{recipe.name}: {len(result.history)} iterations, relative error {100 * last['error']:.2f} %, "
        f"relative SAR {100 * last['sar_rel']:.1f} %"
        + ("" if result.held_out_error is None else f", held-out error {100 * result.held_out_error:.2f} %")
    )
    best = result.best or {}
    bands = ", ".join(
        f"{k.replace('err_k', '|k| ')} {100 * v:.1f} %"
        for k, v in best.get("metrics", {}).items()
        if k.startswith("err_k")
    )
    print(
        f"best full loss {best.get('loss', float('nan')):.5g} at iteration {best.get('iteration')}"
        + (f" (error by k-space band, cycles/FOV: {bands})" if bands else "")
    )
    print(
        f"final sequence: {result.final_checkpoint}; best: {result.out / 'best.pt'}; "
        f"report: {result.out / 'report' / 'summary.html'}"
    )
    if result.hardware is not None:
        where = result.out / "hardware_check.json"
        print(f"hardware check (the exported file, {where}): {result.hardware.summary()}")
        if not result.hardware.passed:
            print(
                "mrzero train: the recipe FAILED its hardware check: the exported file would not be "
                "the sequence that was learned (see docs/training.md, Hardware model)"
            )
            return 3
    return 0
