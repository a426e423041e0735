"""Built-in scenarios are found by name from an installed wheel, not only from the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_packages_and_scenarios(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("fedsimenv-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for required in (
        "fedsimenv/env.py",
        "channels/link.py",
        "agents/base.py",
        "scenarios/tiny.yaml",
        "scenarios/surrogate-digits-small-cnn.json",  # the built-in surrogate calibration
    ):
        assert required in names
    assert not any(name.startswith("tests/") for name in names)

    # Import from the unpacked wheel (first on sys.path), away from the checkout.
    probe = (
        "import importlib.resources, fedsimenv.scenario as s;"
        "print(importlib.resources.files('scenarios'));"
        "print(s.load_scenario('tiny').cell.num_devices)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    location, devices = result.stdout.split()
    assert Path(location).resolve() == (tmp_path / "site" / "scenarios").resolve()
    assert devices == "10"
