"""The runner of ``python -m mfn_tf2.evaluate``: any face-embedding models on pairs and/or .bin sets.

``run(EvalRun(...))`` reads every pair and .bin set first (a bad line or a missing image stops it before
any model runs), opens each model (``FeatureExtractor``), checks that the pairs' images are face crops
(or, with ``detect``, finds the faces in them), scores the pairs with ``verification.verify_models`` and
the .bin sets with ``binsets.verify_bins``, logs one table per kind, writes the files asked for and
returns the report (what ``--json`` holds). Its failures are the ``ERRORS``: one line each.

Example:
    >>> from mfn_tf2.config import EvalConfig
    >>> EvalRun(models=("model.tflite",), eval=EvalConfig(verification_sets=("lfw.bin",))).min_score
    0.9
    >>> EvalRun(models=("model.tflite",), eval=EvalConfig(data_directory="faces"), min_score=1.5)
    Traceback (most recent call last):
    ValueError: --min_score 1.5: expected a confidence in (0, 1)
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass

from mfn_tf2.binsets import bin_tables, read_bin, verify_bins
from mfn_tf2.config import EvalConfig
from mfn_tf2.detection import DetectionError, crop_check, crop_line, detection_lines, pairs_with_faces
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import write_json, write_text
from mfn_tf2.images import ImageError
from mfn_tf2.metrics import MetricsError
from mfn_tf2.models import ModelError
from mfn_tf2.pairs import PairsError, save_pairs
from mfn_tf2.plots import plot_verification
from mfn_tf2.verification import has_pairs, load_pairs, markdown_table, verify_models

# What ``run`` raises for bad input (each a ValueError with one line naming the file): the shell's exit 1.
ERRORS = (PairsError, ModelError, ImageError, MetricsError, DetectionError)


@dataclass(frozen=True)
class EvalRun:
    """One evaluation: the models, what they are scored on, what is written.

    Args:
        models: training directories, SavedModel folders or .tflite files.
        eval: the pairs and/or .bin sets, the pre-processing, the FAR targets.
        num_threads: LiteRT threads.
        output: for models with several outputs, the embedding's name or index (None: the
            (batch, D) output with the largest D).
        detect: the pairs name raw photos: find (MTCNN), align and embed the largest face of each.
        template: the 5-point layout faces are aligned to with ``detect`` (None: the model's
            metadata.json, else ArcFace's for its input's aspect).
        min_score: with ``detect``, the detector's confidence a face needs, in (0, 1).
        crop_check: without ``detect``, stop when sampled images look like photos, not face crops.
        save_pairs: write the pairs used here (plain format), or None.
        json: write the report here, or None.
        save_scores: write a CSV here (path1, path2, label, one score column per model), or None.
        plot: write ROC curves and score histograms here (PNG), or None.
    """
    models: tuple[str, ...]
    eval: EvalConfig
    num_threads: int = 2
    output: str | None = None
    detect: bool = False
    template: str | None = None
    min_score: float = 0.9
    crop_check: bool = True
    save_pairs: str | None = None
    json: str | None = None
    save_scores: str | None = None
    plot: str | None = None

    def __post_init__(self):
        if not (has_pairs(self.eval) or self.eval.verification_sets):
            raise ValueError("give --pairs_filename/--data_directory, or --bin (insightface .bin sets)")
        if self.detect and self.eval.verification_sets:
            raise ValueError("--detect is for pairs of raw photos; .bin sets (--bin) hold aligned faces: "
                             "evaluate them apart")
        if not 0 < self.min_score < 1:
            raise ValueError(f"--min_score {self.min_score}: expected a confidence in (0, 1)")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run(job: EvalRun, log=print, warn=_stderr) -> dict:
    """Scores every model of ``job`` on its pairs and .bin sets; writes the files it names.

    Args:
        job: what to evaluate and write.
        log: takes each line of the results (the pairs' summary and table, detection counts, .bin tables).
        warn: takes each note about a model (which output of several is scored).

    Returns:
        {"config": {"far_target", "flip"}, and with pairs "pairs", "models" (each model's figures, no
        scores) and "detection" (None without ``detect``); with .bin sets "verification_sets"}.

    Raises:
        One of ``ERRORS``: a bad pairs line, missing image or .bin set, a model that cannot be opened,
        images that are photos (without ``detect``), a photo that cannot be read.
    """
    cfg = job.eval
    report = {"config": {"far_target": list(cfg.far_target), "flip": cfg.flip}}
    # every bad line, missing image or unreadable .bin is reported before any model runs
    pairs = load_pairs(cfg) if has_pairs(cfg) else None
    bin_sets = [read_bin(p) for p in cfg.verification_sets]
    extractors = [FeatureExtractor(m, mean=cfg.mean, std=cfg.std, bgr=cfg.bgr, crop=cfg.crop, flip=cfg.flip,
                                   batch_size=cfg.batch_size, num_threads=job.num_threads, output=job.output,
                                   detect=job.detect, min_score=job.min_score, template=job.template)
                  for m in job.models]
    for fe in extractors:
        if fe.note:
            warn(fe.note)
    if pairs:
        pairs, report["detection"] = _faces_or_crops(job, pairs, extractors, log)
        result = _pairs_report(job, pairs, extractors, log)
        report |= {"pairs": result["pairs"],
                   "models": [{k: v for k, v in m.items() if k != "scores"} for m in result["models"]]}
    if bin_sets:
        log(f"insightface verification sets, 10 contiguous folds: {', '.join(s.name for s in bin_sets)}")
        report["verification_sets"] = verify_bins(extractors, bin_sets, cfg.far_target)
        log("\n\n".join(bin_tables(report["verification_sets"])))
    if job.json:
        write_json(job.json, report)
    return report


def _faces_or_crops(job: EvalRun, pairs, extractors, log):
    """With ``detect``: (the pairs whose photos hold a face, what was left out), logged.
    Without: (pairs, None) once each model's input size passed ``detection.crop_check``."""
    if job.detect:
        pairs, info = pairs_with_faces(pairs, job.min_score, progress=True)
        for line in detection_lines(info):
            log(line)
        return pairs, info
    # one check per distinct input: (height, width), crop box, template
    looks = {(fe.input_size, tuple(fe.pre.crop or ()) or None, fe.pre.template) for fe in extractors}
    for size, box, template in looks if job.crop_check else ():
        check = crop_check(pairs.unique_paths(), size, box, template)
        if not check["crops"]:
            raise DetectionError(crop_line(check, size, pairs.source))
    return pairs, None


def _pairs_report(job: EvalRun, pairs, extractors, log) -> dict:
    """Logs the pairs' summary and table, writes save_pairs / save_scores / plot; returns
    ``verify_models``' result."""
    cfg = job.eval
    if job.save_pairs:
        save_pairs(pairs, job.save_pairs, cfg.data_directory)
    result = verify_models(extractors, pairs, cfg.far_target, progress=True)
    skipped = f", {pairs.skipped} skipped (missing images)" if pairs.skipped else ""
    skipped += "; the largest face of each photo found, aligned and embedded" if job.detect else ""
    log(f"{len(pairs.labels)} pairs from {pairs.source}{skipped}"
        + ("; embeddings with flipped images added (Accuracy-Flip)" if cfg.flip else ""))
    log(markdown_table(result, [fe.name + (f" (output {fe.describe()['output']!r})" if fe.note else "")
                                for fe in extractors]))
    if job.save_scores:
        write_text(job.save_scores, scores_csv(pairs, result))
    if job.plot:
        plot_verification({m["name"]: (m["scores"], pairs.labels) for m in result["models"]}, job.plot)
    return result


def scores_csv(pairs, result: dict) -> str:
    """CSV text of every pair's score under every model.

    Args:
        pairs: the PairSet scored (paths1, paths2, labels).
        result: ``verify_models``' result on it (each model's "name" and "scores", one per pair).

    Returns:
        A header (path1, path2, label, one column per model name), then one row per pair.

    Example:
        >>> from mfn_tf2.pairs import PairSet
        >>> pairs = PairSet(["a.jpg"], ["b.jpg"], [1], [0])
        >>> scores_csv(pairs, {"models": [{"name": "m.tflite", "scores": [0.25]}]}).splitlines()
        ['path1,path2,label,m.tflite', 'a.jpg,b.jpg,1,0.250000']
    """
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["path1", "path2", "label"] + [m["name"] for m in result["models"]])
    for k, (a, b, y) in enumerate(zip(pairs.paths1, pairs.paths2, pairs.labels)):
        w.writerow([a, b, int(y)] + [f"{m['scores'][k]:.6f}" for m in result["models"]])
    return out.getvalue()
