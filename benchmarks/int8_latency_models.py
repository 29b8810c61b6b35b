"""Writes the 112 px paper MobileFaceNet as fp32 and int8 .tflite, per-channel and shared PReLU.

    python benchmarks/int8_latency_models.py /tmp/lat            # writes 4 files, prints the next command
    python -m mfn_tf2.benchmark /tmp/lat/*.tflite --threads 1,2 --runs 300 --images data/lfw_demo/heldout

Latency does not depend on the weights' values, only on the graph, so the
network is untrained; batch-norm statistics and slopes are set to spread
values (as after training) so that int8 ranges are realistic. fp32 files are
converted from the backbone as ``export`` does (PReLU and batch norm as the
converter folds them); int8 files from the export form, calibrated on real faces.
"""
import os
import sys

import numpy as np

from mfn_tf2.backend import keras
from mfn_tf2.config import MODEL_PRESETS, PIXEL_MEAN, PIXEL_STD, replace
from mfn_tf2.export_form import export_form
from mfn_tf2.fileio import write_bytes
from mfn_tf2.latency import smooth_images
from mfn_tf2.backbones import build_backbone
from mfn_tf2.tflite import convert


def trained_looking(model: keras.Model, seed: int = 0) -> None:
    """Spread batch-norm statistics and PReLU slopes, as a trained network has."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = weights
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
        elif isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(0.05, 0.4, weights[0].shape)])


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    calibration = ((smooth_images(32, 112).astype(np.float32) - PIXEL_MEAN) / PIXEL_STD)
    for prelu in ("channel", "shared"):
        keras.utils.set_random_seed(0)
        backbone = build_backbone(replace(MODEL_PRESETS["paper"], prelu=prelu))
        trained_looking(backbone)
        write_bytes(os.path.join(out, f"paper112_{prelu}_fp32.tflite"), convert(backbone, "fp32"))
        write_bytes(os.path.join(out, f"paper112_{prelu}_int8.tflite"),
                    convert(export_form(backbone), "int8", calibration))
    print(f"python -m mfn_tf2.benchmark {out}/*.tflite --threads 1,2 --runs 300")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/int8_latency")
