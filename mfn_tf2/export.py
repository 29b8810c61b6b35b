"""Strip the head, quantize and export; prove every exported model against the float one.

    # everything, from a training directory, checked on LFW's held-out pairs; the thresholds
    # from every pair of the held-out faces
    python -m mfn_tf2.export weights/ --out export/lfw \\
        --representative_dir LFW/train --train_directory LFW/train \\
        --pairs_filename LFW/pairs_heldout.txt --data_directory LFW/heldout

    # only the float and post-training int8 files, from a SavedModel, plus the Android assets;
    # thresholds measured on another folder of identities
    python -m mfn_tf2.export weights/embedding_model --out export/app --formats saved_model,fp32,int8 \\
        --representative_dir faces/ --pairs_filename pairs.txt --data_directory faces/ \\
        --calibration_dir more_faces/ --android_assets android_demo_assets/

Writes into ``--out`` (layout: export/README.md): saved_model/, model_<format>.tflite,
metadata.json, report.md, report.json. Each .tflite file's cosine thresholds at FAR
1e-2 .. 1e-6 are measured on its own scores of every pair of --calibration_dir (default:
--data_directory; a folder of identity sub-folders, some 1,500 faces measure FAR down to
1e-5); metadata.json -> threshold is the recommended one (FAR 1e-3 on the better int8 file).
Exits non-zero when a model fails to load or disagrees with the float model beyond
--max_accuracy_drop / --min_cosine; the files stay for inspection.
"""
from __future__ import annotations

import argparse
import os

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.exporting import run
from mfn_tf2.fileio import OutputError, OutputLock

CONFIGS = {"export": C.ExportConfig, "eval": C.EvalConfig, "data": C.DataConfig}


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.export``."""
    p = cli.shell_parser("export", __doc__)
    p.add_argument("model", metavar="MODEL", help="training directory or SavedModel of a backbone")
    cli.add_config_flags(p.add_argument_group("export"), C.ExportConfig)
    cli.add_config_flags(p.add_argument_group("verification pairs"), C.EvalConfig,
                         skip=("sample_type", "repeat_times", "num_person", "num_sample", "crop", "mean",
                               "std", "bgr", "flip"))  # no flip: the app and its threshold use one image
    cli.add_config_flags(p.add_argument_group("QAT fine-tuning data"), C.DataConfig,
                         skip=("valid_directory", "valid_split_ratio", "image_size"))
    return p


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.export``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, CONFIGS)
    try:
        with OutputLock(cfg["export"].out):
            report = run(ns.model, cfg["export"], cfg["eval"], cfg["data"])
    except (ValueError, OutputError) as err:  # ExportError, CheckpointError, DataError, PairsError, ...
        cli.fail(str(err))
    with open(os.path.join(cfg["export"].out, "report.md")) as f:
        print(f.read())
    if not report["ok"]:
        cli.fail("exported models failed the parity check (see the table above); files kept in "
                 f"{cfg['export'].out}")


if __name__ == "__main__":
    main()
