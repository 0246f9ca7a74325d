"""The wheel as a user installs it: configs and py.typed inside, and the documented commands from a folder outside
the repository find the packaged configs (about 20 s: it builds the wheel)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_wheel_runs_the_packaged_configs_from_any_folder(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {**os.environ, "PYTHONPATH": "", "WANDB_MODE": "offline"}
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("epspp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "epspp/py.typed" in names and "epspp/configs/voc/localization_eps++.yaml" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, env=env)
    # the wheel first, then the venv's packages (its own editable epspp comes after the wheel's)
    env["PYTHONPATH"] = os.pathsep.join([str(target), *site.getsitepackages()])

    def epspp(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "epspp", *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import epspp; print(epspp.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(target))
    assert "voc/localization_eps++.yaml" in epspp("configs", "list").splitlines()
    printed = epspp("fit", "--config", "voc/localization_eps++.yaml", "--print_config")
    assert "class_path: epspp." in printed and "trainer:" in printed
    chain = epspp("chain", "--dataset", "voc", "--segmentation", "wsss", "--root", "data", "--out", "runs", "--print")
    assert f"--config {target / 'epspp/configs/voc/localization_eps++.yaml'}" in chain
    folders = subprocess.run(
        [
            sys.executable,
            "-c",
            "from epspp.demo import demo_configs; from epspp.run import "
            "preset_folder; print(demo_configs(None)); print(preset_folder('photos'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert folders == [str(target / "epspp/configs/demo"), str(target / "epspp/configs/photos")]
    epspp("configs", "copy", "demo", "mine")
    assert (elsewhere / "mine/demo/pseudo_masks.yaml").is_file()
    assert list(elsewhere.iterdir()) == [elsewhere / "mine"]  # nothing else written in the user's folder
