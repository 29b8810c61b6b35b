"""The verification figure is a real PNG, written atomically."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from mfn_tf2.metrics import MetricsError
from mfn_tf2.plots import plot_verification


def _scores(seed, n=400, separation=2.0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    return np.tanh((rng.normal(size=n) + separation * labels) / 3), labels


def test_two_models_make_one_valid_png(tmp_path):
    path = tmp_path / "verification.png"
    plot_verification({"float": _scores(0), "int8": _scores(1, separation=1.5)}, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size == (1200, 450) and img.format == "PNG"
        # Not a blank canvas: curves and bars put many colours on it.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50
    assert os.listdir(tmp_path) == ["verification.png"]  # no temp file left behind


def test_replaces_an_existing_file_and_grows_with_models(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    three = {f"model {k}": _scores(k) for k in range(3)}
    plot_verification(three, path)
    with Image.open(path) as img:
        assert img.size[1] > 450  # one histogram row per model
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_does_not_change_the_pyplot_backend(tmp_path):
    before = sys.modules.get("matplotlib.pyplot")
    plot_verification({"m": _scores(2)}, tmp_path / "a.png")
    assert sys.modules.get("matplotlib.pyplot") is before


def test_bad_results_raise(tmp_path):
    with pytest.raises(ValueError, match="at least one model"):
        plot_verification({}, tmp_path / "x.png")
    with pytest.raises(MetricsError, match="one different pair"):
        plot_verification({"m": (np.array([0.1, 0.2]), np.array([1, 1]))}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
