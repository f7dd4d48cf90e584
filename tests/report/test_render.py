"""The report as a browser shows it: headless Chromium renders it to a PNG with colour on
it (a blank page does not pass), and nothing is fetched from the network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, profile: Path, size: str = "1400,3000") -> np.ndarray:
    """Render ``page`` in headless Chromium (offline flags) and return the picture (RGB)."""
    from PIL import Image

    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           f"--window-size={size}", f"--screenshot={png}", page.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(png).convert("RGB"))


def ink(rgb: np.ndarray) -> tuple[float, int]:
    """Fraction of pixels that are not near-white, and the number of distinct colours."""
    dark = (rgb < 235).any(axis=2)
    colours = len(np.unique(rgb.reshape(-1, 3)[::7], axis=0))
    return float(dark.mean()), colours


def test_report_renders_in_headless_chromium(cg_fit: Path, tmp_path: Path) -> None:
    res = run_cli("report", cg_fit, "--out", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    empty_ink, _ = ink(screenshot(blank, tmp_path / "blank.png", tmp_path / "profile"))
    report_ink, colours = ink(screenshot(tmp_path / "r.html", tmp_path / "r.png",
                                         tmp_path / "profile"))
    assert empty_ink < 0.001  # the measure itself: a blank page has no ink
    assert report_ink > 0.02, report_ink  # text, plots and points (about 0.05 measured)
    assert colours > 200, colours  # pictures in colour, not only black text
