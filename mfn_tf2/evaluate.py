"""Verify any face-embedding model(s) on a pairs file: one side-by-side table.

    # a checkpoint, its SavedModel and its TFLite exports on LFW's held-out pairs
    python -m mfn_tf2.evaluate weights/ export/demo/saved_model export/demo/model_int8.tflite \\
        --pairs_filename ../shared/data/lfw/pairs_heldout.txt --data_directory ../shared/data/lfw/heldout \\
        --far_target 1e-3,1e-2 --json eval.json --save_scores scores.csv --plot roc.png

    # a model trained elsewhere (112x96 input, BGR, its own normalisation), with flipped images
    python -m mfn_tf2.evaluate other.tflite --pairs_filename lfw/pairs.txt --data_directory lfw \\
        --bgr true --mean 127.5 --std 127.5 --flip true

    # pairs generated from a folder of identities, saved for later
    python -m mfn_tf2.evaluate weights/ --data_directory faces/ --sample_type 0 --repeat_times 10 \\
        --save_pairs pairs_generated.txt

Models: a training directory, a SavedModel folder or a .tflite file. Input
size, dtype and quantization are read from each model; pre-processing from its
metadata.json (our exports) unless given. A model with several outputs is
scored on its (batch, D) output with the largest D (stderr and the table say
which); ``--output NAME_OR_INDEX`` chooses another.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys

from mfn_tf2 import cli
from mfn_tf2.config import EvalConfig
from mfn_tf2.embedders import EmbedderError, FeatureExtractor
from mfn_tf2.fileio import write_json, write_text
from mfn_tf2.images import ImageError
from mfn_tf2.metrics import MetricsError
from mfn_tf2.pairs import PairsError, save_pairs
from mfn_tf2.verification import load_pairs, markdown_table, verify_models


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.evaluate``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.evaluate", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("models", nargs="+", metavar="MODEL", help="training directory, SavedModel or .tflite")
    cli.add_config_flags(p, EvalConfig)
    p.add_argument("--num_threads", type=int, default=2, help="LiteRT threads (default: 2)")
    p.add_argument("--output", metavar="NAME_OR_INDEX",
                   help="for models with several outputs, the embedding's name or index "
                        "(default: the (batch, D) output with the largest D)")
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
    try:
        pairs = load_pairs(cfg)  # every bad line or missing image is reported before any model runs
        extractors = [FeatureExtractor(m, mean=cfg.mean, std=cfg.std, bgr=cfg.bgr, crop=cfg.crop,
                                       flip=cfg.flip, batch_size=cfg.batch_size, num_threads=ns.num_threads,
                                       output=ns.output)
                      for m in ns.models]
        for fe in extractors:
            if fe.note:
                print(fe.note, file=sys.stderr)
        if ns.save_pairs:
            save_pairs(pairs, ns.save_pairs, cfg.data_directory)
        result = verify_models(extractors, pairs, cfg.far_target, progress=True)
    except (PairsError, EmbedderError, ImageError, MetricsError) as err:
        cli.fail(str(err))
    skipped = f", {pairs.skipped} skipped (missing images)" if pairs.skipped else ""
    print(f"{len(pairs.labels)} pairs from {pairs.source}{skipped}"
          + ("; embeddings with flipped images added (Accuracy-Flip)" if cfg.flip else ""))
    print(markdown_table(result, [fe.name + (f" (output {fe.describe()['output']!r})" if fe.note else "")
                                  for fe in extractors]))
    if ns.json:
        write_json(ns.json, {"pairs": result["pairs"], "config": {"far_target": list(cfg.far_target),
                                                                   "flip": cfg.flip},
                             "models": [{k: v for k, v in m.items() if k != "scores"}
                                        for m in result["models"]]})
    if ns.save_scores:
        write_text(ns.save_scores, scores_csv(pairs, result))
    if ns.plot:
        from mfn_tf2.plots import plot_verification
        plot_verification({m["name"]: (m["scores"], pairs.labels) for m in result["models"]}, ns.plot)


if __name__ == "__main__":
    main()
