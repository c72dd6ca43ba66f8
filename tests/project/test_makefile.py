"""The Makefile finds a Python >= 3.11 whatever it is called, and says so when there is none.

Each case runs the real `make` from the repository with a PATH holding only `make` and fake
interpreters: shell scripts that answer the version check the way a real one of that version
would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fake_python(directory: Path, name: str, version: tuple[int, int]) -> None:
    new_enough = version >= (3, 11)
    script = directory / name
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-V" ]; then echo "Python {version[0]}.{version[1]}.0"; exit 0; fi\n'
        f"exit {0 if new_enough else 1}\n"
    )
    script.chmod(0o755)


def _make(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None, "make is needed to build this project"
    if not (bin_dir / "make").exists():
        (bin_dir / "make").symlink_to(make)
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("interpreters", "chosen"),
    [
        ({"python3.12": (3, 12), "python3.11": (3, 11), "python3": (3, 11)}, "python3.12"),
        ({"python3.13": (3, 13), "python3": (3, 9)}, "python3.13"),
        ({"python3": (3, 12)}, "python3"),
        # A version manager's shim for a version that is not installed fails to run.
        ({"python3.14": (3, 8), "python3": (3, 11)}, "python3"),
    ],
)
def test_picks_the_newest_python_that_runs(
    tmp_path: Path, interpreters: dict[str, tuple[int, int]], chosen: str
) -> None:
    for name, version in interpreters.items():
        _fake_python(tmp_path, name, version)
    result = _make(tmp_path, "-s", "python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == chosen


def test_an_explicit_python_wins(tmp_path: Path) -> None:
    _fake_python(tmp_path, "python3.12", (3, 12))
    result = _make(tmp_path, "-s", "python", "PYTHON=/opt/custom/python")
    assert result.stdout.strip() == "/opt/custom/python"


def test_no_python_new_enough_is_a_clear_error(tmp_path: Path) -> None:
    _fake_python(tmp_path, "python3", (3, 9))
    assert _make(tmp_path, "-s", "python").stdout.strip() == "no Python 3.11+ found"
    # The rule that creates the venv, in a fresh place, refuses with a message.
    result = _make(
        tmp_path, "-s", "VENV=" + str(tmp_path / "venv"), str(tmp_path / "venv/bin/python")
    )
    assert result.returncode != 0
    assert "Python 3.11 or newer is needed, and none was found on PATH" in result.stderr
    assert "PYTHON=/path/to/python3" in result.stderr


def test_an_explicit_python_too_old_is_named(tmp_path: Path) -> None:
    _fake_python(tmp_path, "python3.10", (3, 10))
    result = _make(
        tmp_path,
        "-s",
        "PYTHON=python3.10",
        "VENV=" + str(tmp_path / "venv"),
        str(tmp_path / "venv/bin/python"),
    )
    assert result.returncode != 0
    assert "PYTHON=python3.10 is not Python 3.11 or newer (Python 3.10.0)" in result.stderr
