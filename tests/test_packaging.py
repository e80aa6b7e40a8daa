"""The built wheel and sdist carry the licence, the data's notice and the data.

Built from a copy of the repository with this environment's setuptools (the PEP 517
hooks the build front ends call), so the test needs no network and leaves no build
output in the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "l2optim/data/DIABETES_LICENSE.txt"
# One hook per process, as the build front ends call them.
BUILD = """
import sys
from setuptools import build_meta
print("BUILT", getattr(build_meta, sys.argv[1])(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    source = tmp_path_factory.mktemp("source") / "l2optim"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "_build", "auto_examples", "gen_modules", "build", "dist",
            "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
        ),
    )
    out = tmp_path_factory.mktemp("dist")
    names = []
    for hook in ("build_wheel", "build_sdist"):
        done = subprocess.run(
            [sys.executable, "-c", BUILD, hook, str(out)],
            cwd=source, capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        names += [line.split()[1] for line in done.stdout.splitlines() if line.startswith("BUILT ")]
    wheel_name, sdist_name = names
    return out / wheel_name, out / sdist_name


def test_the_wheel_carries_the_licence_the_notice_and_the_data(built) -> None:
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        assert archive.read(info) == (ROOT / "LICENSE").read_bytes()
        assert any(n.endswith(".dist-info/licenses/" + NOTICE) for n in names)
        assert {"l2optim/data/diabetes.csv", NOTICE} <= set(names)
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"License-Expression: BSD-3-Clause" in metadata


def test_the_sdist_carries_the_licence_and_the_notice(built) -> None:
    _, sdist = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", NOTICE, "l2optim/data/diabetes.csv"} <= names


def test_the_version_is_the_packages_one_in_the_metadata_and_on_the_command_line(built):
    import importlib.metadata

    import l2optim
    from l2optim._cli import main

    assert l2optim.__version__ == importlib.metadata.version("l2optim")
    wheel, _ = built
    assert wheel.name.startswith(f"l2optim-{l2optim.__version__}-")
    with pytest.raises(SystemExit):
        main(["--version"])
