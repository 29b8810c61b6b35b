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
import csv
import io
import sys

from mfn_tf2 import cli
from mfn_tf2.alignment import TEMPLATES
from mfn_tf2.binsets import bin_tables, read_bin, verify_bins
from mfn_tf2.config import EvalConfig
from mfn_tf2.detection import DetectionError, crop_check, crop_line, detection_lines, pairs_with_faces
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import write_json, write_text
from mfn_tf2.images import ImageError
from mfn_tf2.metrics import MetricsError
from mfn_tf2.models import ModelError
from mfn_tf2.pairs import PairsError, save_pairs
from mfn_tf2.verification import has_pairs, load_pairs, markdown_table, verify_models


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.evaluate``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
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


def scores_csv(pairs, result) -> str:
    """CSV text: path1, path2, label, then one score column per model."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["path1", "path2", "label"] + [m["name"] for m in result["models"]])
    for k, (a, b, y) in enumerate(zip(pairs.paths1, pairs.paths2, pairs.labels)):
        w.writerow([a, b, int(y)] + [f"{m['scores'][k]:.6f}" for m in result["models"]])
    return out.getvalue()


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.evaluate``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"eval": EvalConfig})["eval"]
    if not (has_pairs(cfg) or cfg.verification_sets):
        parser.error("give --pairs_filename/--data_directory, or --bin (insightface .bin sets)")
    if ns.detect and cfg.verification_sets:
        parser.error("--detect is for pairs of raw photos; .bin sets (--bin) hold aligned faces: evaluate them apart")
    if not 0 < ns.min_score < 1:
        parser.error(f"--min_score {ns.min_score}: expected a confidence in (0, 1)")
    report = {"config": {"far_target": list(cfg.far_target), "flip": cfg.flip}}
    try:
        # every bad line, missing image or unreadable .bin is reported before any model runs
        pairs = load_pairs(cfg) if has_pairs(cfg) else None
        bin_sets = [read_bin(p) for p in cfg.verification_sets]
        extractors = [FeatureExtractor(m, mean=cfg.mean, std=cfg.std, bgr=cfg.bgr, crop=cfg.crop,
                                       flip=cfg.flip, batch_size=cfg.batch_size, num_threads=ns.num_threads,
                                       output=ns.output, detect=ns.detect, min_score=ns.min_score,
                                       template=ns.template)
                      for m in ns.models]
        for fe in extractors:
            if fe.note:
                print(fe.note, file=sys.stderr)
        if pairs:
            pairs, report["detection"] = _faces_or_crops(ns, pairs, extractors)
            result = _pairs_report(ns, cfg, pairs, extractors)
            report |= {"pairs": result["pairs"], "models": [{k: v for k, v in m.items() if k != "scores"}
                                                            for m in result["models"]]}
        if bin_sets:
            print(f"insightface verification sets, 10 contiguous folds: {', '.join(s.name for s in bin_sets)}")
            report["verification_sets"] = verify_bins(extractors, bin_sets, cfg.far_target)
            print("\n\n".join(bin_tables(report["verification_sets"])))
    except (PairsError, ModelError, ImageError, MetricsError, DetectionError) as err:
        cli.fail(str(err))
    if ns.json:
        write_json(ns.json, report)


def _faces_or_crops(ns, pairs, extractors):
    """With --detect: (the pairs whose photos hold a face, what was left out); printed.
    Without: (pairs, None) once each model's input size passed ``detection.crop_check``."""
    if ns.detect:
        pairs, info = pairs_with_faces(pairs, ns.min_score, progress=True)
        for line in detection_lines(info):
            print(line)
        return pairs, info
    looks = {(fe.input_size, tuple(fe.pre.crop or ()) or None, fe.pre.template) for fe in extractors}
    for size, box, template in looks if ns.crop_check else ():
        check = crop_check(pairs.unique_paths(), size, box, template)
        if not check["crops"]:
            raise DetectionError(crop_line(check, size, pairs.source))
    return pairs, None


def _pairs_report(ns, cfg, pairs, extractors) -> dict:
    """Prints the pairs table, writes --save_pairs/--save_scores/--plot; returns verify_models' result."""
    if ns.save_pairs:
        save_pairs(pairs, ns.save_pairs, cfg.data_directory)
    result = verify_models(extractors, pairs, cfg.far_target, progress=True)
    skipped = f", {pairs.skipped} skipped (missing images)" if pairs.skipped else ""
    skipped += "; the largest face of each photo found, aligned and embedded" if ns.detect else ""
    print(f"{len(pairs.labels)} pairs from {pairs.source}{skipped}"
          + ("; embeddings with flipped images added (Accuracy-Flip)" if cfg.flip else ""))
    print(markdown_table(result, [fe.name + (f" (output {fe.describe()['output']!r})" if fe.note else "")
                                  for fe in extractors]))
    if ns.save_scores:
        write_text(ns.save_scores, scores_csv(pairs, result))
    if ns.plot:
        from mfn_tf2.plots import plot_verification
        plot_verification({m["name"]: (m["scores"], pairs.labels) for m in result["models"]}, ns.plot)
    return result

if __name__ == "__main__":
    main()
