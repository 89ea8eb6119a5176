"""The multi-node training Job (deploy/k8s/training): valid against the Kubernetes schemas, and its
pieces fit together: torchrun's own parser and the mrzero command accept its arguments, node ranks
come from the Indexed Job, the rendezvous address is pod 0 behind the headless Service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from mrzero.cli import build_parser
from mrzero.sequences.training.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy/k8s/training"
BIN = Path(sys.executable).parent


def _load(name: str) -> dict:
    return yaml.safe_load((FOLDER / name).read_text())


def test_training_manifests_validate_against_the_schemas():
    kust = _load("kustomization.yaml")
    files = [FOLDER / name for name in kust["resources"]]
    res = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (res.stdout + res.stderr).count("passed") == 3  # job, headless service, shared volume


def test_job_service_and_torchrun_arguments_fit_together():
    from torch.distributed.run import get_args_parser

    job, service, volume = _load("job.yaml"), _load("service.yaml"), _load("volumes.yaml")
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert job["spec"]["completionMode"] == "Indexed"
    assert pod["spec"]["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert container["command"] == ["torchrun"]
    assert "--node-rank=$(NODE_RANK)" in container["args"]
    # as Kubernetes expands it in pod 1:
    run = get_args_parser().parse_args([a.replace("$(NODE_RANK)", "1") for a in container["args"]])
    assert int(run.nnodes) == job["spec"]["completions"] == job["spec"]["parallelism"]
    assert run.node_rank == 1
    env = {e["name"]: e for e in container["env"]}
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert run.master_addr == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert run.master_port == service["spec"]["ports"][0]["port"]
    assert run.no_python and run.training_script == "mrzero"
    args = build_parser().parse_args(run.training_script_args)
    load_recipe(args.recipe)  # a shipped recipe
    assert args.device == "cuda" and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert Path(args.out).is_relative_to(mounts["runs"])
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]}
    assert claims["runs"] == volume["metadata"]["name"] and "ReadWriteMany" in volume["spec"]["accessModes"]
