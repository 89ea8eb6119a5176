"""The built wheel installs one import root, ``mrzero``, and sits beside a module named ``server``.

FIRE chroots run python-ismrmrd-server, whose ``server.py`` lives at its root; other packages named
``pipelines`` exist. The wheel is built from a copy of the tracked files and installed (without
dependencies) into a fresh virtual environment whose only other path entry is the project
environment's site-packages, for the dependencies; the editable install's finder is not loaded
there, so every ``mrzero`` module comes from the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

PROBE = """
import sys
import server
import mrzero.cli, mrzero.server.listener, mrzero.pipelines.catalog, mrzero.sequences.simulate
from mrzero.core.brain_atlas import brain_data
from mrzero.pipelines import registry
assert server.Server.__module__ == "server", server.__file__
assert "site-packages" in mrzero.server.listener.__file__, mrzero.server.listener.__file__
assert brain_data()["counts"].shape[0] == 8  # package data travelled with the wheel
print(sorted(registry.names()))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("mrzero_server-*.whl")
    return found


def test_the_wheel_has_one_top_level_package(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mrzero"}


def test_installed_wheel_imports_beside_a_module_named_server(wheel, tmp_path):
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "fire"
    work.mkdir()
    (work / "server.py").write_text("class Server:\n    '''python-ismrmrd-server's server module.'''\n")
    run = subprocess.run([python, "-c", PROBE], cwd=work, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "cartesian" in run.stdout and "roar" in run.stdout
