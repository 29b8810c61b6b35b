"""Measure a model's cosine thresholds at target false accept rates on every pair of a face folder.

    # the app's model on the bundled held-out faces (1,549 images of 890 people: 1,197,599
    # different-person pairs, so FAR down to 1e-5 is measured)
    python -m mfn_tf2.calibrate android_demo_assets/model_int8.tflite data/lfw_demo/heldout

    # chosen rates, all figures to a file
    python -m mfn_tf2.calibrate export/demo/model_qat_int8.tflite faces/ --far 1e-3,1e-4 --json thresholds.json

FOLDER holds one sub-folder per identity. Every image is embedded once; every same-person and
different-person pair among them is scored. Per target: the smallest cosine whose measured FAR
is at most the target, the FAR met (Clopper-Pearson 95 % interval), the TAR (95 % bootstrap
interval over identities; --seed seeds it). A target allowing fewer than 10 false accepts among
the pairs is reported as not measurable, never extrapolated. Unreadable files are skipped and
counted. Pre-processing comes from the model's metadata.json unless given.
"""
from __future__ import annotations

import argparse
import sys

from mfn_tf2 import cli
from mfn_tf2.calibration import CalibrationError, calibrate, thresholds_markdown
from mfn_tf2.config import FAR_TARGETS, EvalConfig
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import write_json
from mfn_tf2.folders import DataError
from mfn_tf2.images import ImageError
from mfn_tf2.models import ModelError

# EvalConfig's fields that concern pairs files and training checks, not one folder's pairs.
_NOT_HERE = ("pairs_filename", "data_directory", "sample_type", "repeat_times", "num_person", "num_sample",
             "skip_missing", "verification_sets", "best_by")


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.calibrate``."""
    p = cli.shell_parser("calibrate", __doc__)
    p.add_argument("model", metavar="MODEL", help="a .tflite file, SavedModel or training directory")
    p.add_argument("folder", metavar="FOLDER", help="faces, one sub-folder per identity")
    cli.add_config_flags(p, EvalConfig, skip=_NOT_HERE, defaults=EvalConfig(far_target=FAR_TARGETS))
    p.add_argument("--far", dest="far_target", type=cli.field_parser(EvalConfig, "far_target"),
                   default=argparse.SUPPRESS, metavar="1e-2,1e-3", help="same as --far_target")
    p.add_argument("--num_threads", type=int, default=2, help="LiteRT threads (default: 2)")
    p.add_argument("--json", metavar="FILE", help="all figures")
    return p


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.calibrate``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"eval": EvalConfig})["eval"]
    try:
        fe = FeatureExtractor(ns.model, mean=cfg.mean, std=cfg.std, bgr=cfg.bgr, crop=cfg.crop, flip=cfg.flip,
                              batch_size=cfg.batch_size, num_threads=ns.num_threads)
        result = calibrate(fe, ns.folder, cfg.far_target, seed=cfg.seed, progress=sys.stderr.isatty())
    except (CalibrationError, DataError, ModelError, ImageError) as err:
        cli.fail(str(err))
    skipped = result["skipped"]
    print(f"{ns.model} on {ns.folder}: {result['images']:,} images of {result['identities']:,} identities "
          f"({skipped['files']} unreadable files and {skipped['empty_identities']} empty identity folders "
          f"skipped); {result['genuine_pairs']:,} same-person pairs, {result['impostor_pairs']:,} "
          "different-person pairs")
    print("\n".join(thresholds_markdown(result["points"])))
    print(f"FAR interval: {result['methods']['far_interval']}; TAR interval: {result['methods']['tar_interval']}")
    if ns.json:
        write_json(ns.json, result)


if __name__ == "__main__":
    main()
