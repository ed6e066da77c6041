"""Test data locations. w8a lives outside the repository (it is not committed):
``$MPIPS_W8A`` if set, else ``../shared/data/w8a`` next to the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
W8A_ROWS, W8A_FEATURES = 49_749, 300


def under_ci() -> bool:
    """True when the environment says this is a CI run (missing data must fail there)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, message: str):
    """Skip the calling test because ``message`` (something it needs is missing); under
    CI=true, where every test must run, fail it instead, saying CI needs ``what``."""
    if under_ci():
        pytest.fail(f"CI needs {what}: {message}", pytrace=False)
    pytest.skip(message)


def w8a_path() -> Path:
    """Path of the w8a LIBSVM file. Skips the calling test when the file is missing, except
    under CI=true, where a missing file fails the test."""
    path = Path(os.environ.get("MPIPS_W8A", REPO_ROOT.parent / "shared" / "data" / "w8a"))
    if not path.is_file():
        unavailable("the data set", f"w8a not found at {path} (set MPIPS_W8A)")
    return path
