"""Verify any face-embedding model(s) on a pairs file: one side-by-side table.

    # a checkpoint, its SavedModel and its TFLite exports on the bundled held-out LFW pairs
    python -m mfn_tf2.evaluate weights/ export/demo/saved_model export/demo/model_int8.tflite \\
        --pairs_filename data/lfw_demo/pairs_heldout.txt --data_directory data/lfw_demo/heldout \\
        --far_target 1e-3,1e-2 --json eval.json --save_scores scores.csv --plot roc.png

    # a model trained elsewhere (112x96 input, BGR, its own normalisation), with flipped images
    python -m mfn_tf2.evaluate other.tflite --pairs_filename lfw/pairs.txt --data_directory lfw \\
        --bgr true --mean 127.5 --std 127.5 --flip true

    # insightface's .bin sets: one table per model, accuracy with and without flip
    python -m mfn_tf2.evaluate weights/ export/demo/model_int8.tflite --bin lfw.bin,cfp_fp.bin,agedb_30.bin

    # raw photos (faces anywhere in the frame): find, align and embed the largest face of each
    python -m mfn_tf2.evaluate model.tflite --pairs_filename photo_pairs.txt --data_directory photos --detect

    # pairs generated from a folder of identities, saved for later
    python -m mfn_tf2.evaluate weights/ --data_directory faces/ --sample_type 0 --repeat_times 10 \\
        --save_pairs pairs_generated.txt

Models: a training directory, a SavedModel folder or a .tflite file. Input
size, dtype and quantization are read from each model; pre-processing from its
metadata.json (our exports) unless given. A model with several outputs is
scored on its (batch, D) output with the largest D (stderr and the table say
which); ``--output NAME_OR_INDEX`` chooses another.

Images must be face crops, unless ``--detect`` is given. Without it, a sample
of images much larger than the model's input is checked with the face
detector: when they look like photos (no face, or a face far from the
template's place), the evaluator stops with one line pointing to ``--detect``
rather than print a near-chance figure. With ``--detect``, a photo where no
face is found is named, and its pairs are left out and counted (not scored);
a photo with several faces gives its largest.
"""
from __future__ import annotations

import argparse

from mfn_tf2 import cli
from mfn_tf2.alignment import TEMPLATES
from mfn_tf2.config import EvalConfig
from mfn_tf2.evaluating import ERRORS, EvalRun, run


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.evaluate``."""
    p = cli.shell_parser("evaluate", __doc__)
    p.add_argument("models", nargs="+", metavar="MODEL", help="training directory, SavedModel or .tflite")
    cli.add_config_flags(p, EvalConfig)
    p.add_argument("--bin", dest="verification_sets", type=cli.field_parser(EvalConfig, "verification_sets"),
                   default=argparse.SUPPRESS, metavar="A.bin,B.bin", help="same as --verification_sets")
    p.add_argument("--num_threads", type=int, default=2, help="LiteRT threads (default: 2)")
    p.add_argument("--output", metavar="NAME_OR_INDEX",
                   help="for models with several outputs, the embedding's name or index "
                        "(default: the (batch, D) output with the largest D)")
    p.add_argument("--detect", action="store_true",
                   help="the pairs name raw photos: find (MTCNN), align and embed the largest face of each; "
                        "pairs with a photo where no face is found are left out, named and counted")
    p.add_argument("--template", choices=sorted(TEMPLATES),
                   help="the 5-point layout faces are aligned to with --detect (default: the model's "
                        "metadata.json, else ArcFace's for its input's aspect; lfw_a: the bundled LFW faces' "
                        "layout, for models trained on them)")
    p.add_argument("--min_score", type=float, default=0.9,
                   help="with --detect: the detector's confidence a face needs, in (0, 1) (default: 0.9)")
    p.add_argument("--crop_check", type=cli.str2bool, default=True, metavar="true|false",
                   help="without --detect, stop when sampled images look like photos, not face crops "
                        "(default: true)")
    p.add_argument("--save_pairs", metavar="FILE", help="write the pairs used, plain format")
    p.add_argument("--json", metavar="FILE", help="all figures, per model")
    p.add_argument("--save_scores", metavar="FILE", help="CSV: path1, path2, label, one score column per model")
    p.add_argument("--plot", metavar="FILE.png", help="ROC curves and score histograms")
    return p


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.evaluate``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"eval": EvalConfig})["eval"]
    job = cli.build_configs(parser, ns, {"job": EvalRun}, job={"models": tuple(ns.models), "eval": cfg})["job"]
    try:
        run(job, log=print)
    except ERRORS as err:
        cli.fail(str(err))


if __name__ == "__main__":
    main()
