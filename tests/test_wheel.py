"""A wheel that works alone: built from this tree, installed into a fresh virtual environment with
no access to the source checkout, it trains, samples and finds its configs."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow
def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("ganctl-*.whl")

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # Offline: the dependencies (torch, Hydra, ...) come from the environment running the tests, through
    # a .pth file placed after the new environment's own site-packages, so the wheel's ganctl wins.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    work = tmp_path / "elsewhere"  # not the checkout: conf/ must come from inside the wheel
    work.mkdir()
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ganctl = env_dir / "bin" / "ganctl"
    where = subprocess.run(
        [str(python), "-c", "import ganctl, ganctl.cli; print(ganctl.__file__, ganctl.cli.conf_dir())"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
    )
    assert str(env_dir) in where.stdout and str(REPO) not in where.stdout, where.stdout + where.stderr
    train = subprocess.run(
        [
            str(ganctl),
            "train",
            "+experiment=gaussian1d",
            "trainer.steps=10",
            "trainer.log_every=5",
            "trainer.progress=false",
            "hydra.run.dir=run",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    sample = subprocess.run(
        [str(ganctl), "sample", "run", "-n", "100", "-o", "s.npy"],
        cwd=work,
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert (work / "s.npy").stat().st_size > 400
