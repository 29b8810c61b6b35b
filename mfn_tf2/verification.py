"""Face verification of one or many models on the same pairs: the kit's judge.

Pairs are read (or generated) and checked before any model runs; every image
is embedded once per model; scores are cosine similarities; the figures
follow the LFW conventions of ``metrics.py``. The training loop's periodic
check, ``mfn_tf2.evaluate`` and the export report all come through here.

Example (the shipped fp16 and int8 files on the bundled pairs; the first is the reference):
    >>> pairs = load_pairs(EvalConfig(pairs_filename="data/lfw_demo/pairs_heldout.txt",
    ...                               data_directory="data/lfw_demo/heldout"))
    >>> result = verify_models([FeatureExtractor(f"android_demo_assets/model_{kind}.tflite")
    ...                         for kind in ("fp16", "int8")], pairs, (1e-3, 1e-2))
    >>> result["pairs"]
    {'source': 'data/lfw_demo/pairs_heldout.txt', 'n_pairs': 1200, 'n_images': 1549, 'skipped': 0}
    >>> result["models"][1]["paired"]["test"]
    'exact McNemar, two-sided'
    >>> print(markdown_table(result, ["fp16", "int8"]).splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
    | model | accuracy (%) | threshold | TAR@FAR=0.001 (%) | TAR@FAR=0.01 (%) | EER (%) | AUC |
      cosine to first (mean / min) | accuracy vs first (paired test) |
"""
from __future__ import annotations

import numpy as np

from mfn_tf2 import metrics, stats
from mfn_tf2.binsets import score_set
from mfn_tf2.config import EvalConfig, set_name
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.pairs import PairSet, generate_pairs, read_pairs


def load_pairs(cfg: EvalConfig) -> PairSet:
    """The pairs of an EvalConfig: read from ``pairs_filename`` or generated from ``data_directory``."""
    if cfg.pairs_filename:
        return read_pairs(cfg.pairs_filename, cfg.data_directory, skip_missing=cfg.skip_missing)
    return generate_pairs(cfg.data_directory, sample_type=cfg.sample_type, repeat_times=cfg.repeat_times,
                          num_person=cfg.num_person, num_sample=cfg.num_sample, seed=cfg.seed)


def verify_models(extractors: list[FeatureExtractor], pairs: PairSet, far_targets=(1e-2,),
                  progress: bool = False) -> dict:
    """Embeds the pairs' images with every model and scores them.

    Args:
        extractors: the models; the first one is the reference for agreement.
        pairs: the verification pairs.
        far_targets: FARs at which TAR is reported.
        progress: show a progress bar per model.

    Returns:
        {"pairs": {...}, "models": [{"name", "model", "report", "scores", "agreement", "paired"}]};
        "agreement" (mean/min cosine between this model's and the first model's
        embeddings of the same images) and "paired" (``stats.paired_difference``
        of the pairs each decided right at its k-fold thresholds: the accuracy
        difference to the first model and whether it is chance) are None for the
        first model.
    """
    paths = pairs.unique_paths()
    i1, i2 = pairs.pair_indices()
    results, reference, reference_correct = [], None, None
    for fe in extractors:
        emb = fe.embed_paths(paths, progress=progress)
        scores = np.sum(emb[i1] * emb[i2], axis=1)
        report = metrics.verification_report(scores, pairs.labels, pairs.folds, far_targets)
        correct = metrics.kfold_correct(scores, pairs.labels, pairs.folds)
        first = reference is None
        agreement = None if first else metrics.cosine_agreement(reference, emb)
        paired = None if first else stats.paired_difference(reference_correct, correct)
        reference, reference_correct = (emb, correct) if first else (reference, reference_correct)
        results.append({"name": fe.name, "model": fe.describe(), "report": report,
                        "scores": scores, "agreement": agreement, "paired": paired})
    return {"pairs": {"source": pairs.source, "n_pairs": len(pairs.labels), "n_images": len(paths),
                      "skipped": pairs.skipped}, "models": results}


def has_pairs(cfg: EvalConfig) -> bool:
    """Whether ``cfg`` names pairs (a file, or a folder to generate them from)."""
    return bool(cfg.pairs_filename or cfg.data_directory)


def log_columns(cfg: EvalConfig) -> list[str]:
    """The epoch-log keys the periodic check fills (history.csv columns, TensorBoard scalars)."""
    return ((["verify_accuracy", "verify_tar"] if has_pairs(cfg) else [])
            + [f"{set_name(p)}_{key}" for p in cfg.verification_sets
               for key in ("accuracy", "accuracy_flip")])


def verifier_for(pairs: PairSet | None, cfg: EvalConfig, bin_sets=()):
    """A callable(backbone) -> report, for the training loop's periodic check.

    The report is ``metrics.verification_report`` of the pairs (empty without
    pairs) plus "sets": {name: {"accuracy", "accuracy_flip", "n_pairs"}} of
    the .bin sets (fractions).
    """
    made = {}  # one extractor per backbone (the run's copy): its graph is traced once, read by every check

    def verify(backbone) -> dict:
        if id(backbone) not in made:
            made[id(backbone)] = FeatureExtractor(backbone, flip=cfg.flip, batch_size=cfg.batch_size)
        fe = made[id(backbone)]
        report = verify_models([fe], pairs, cfg.far_target)["models"][0]["report"] if pairs else {}
        scored = {s.name: score_set(fe, s, cfg.far_target) for s in bin_sets}
        report["sets"] = {name: {"accuracy": r["accuracy"]["accuracy"],
                                 "accuracy_flip": r["accuracy_flip"]["accuracy"],
                                 "n_pairs": r["accuracy"]["n_pairs"]} for name, r in scored.items()}
        return report
    return verify


def markdown_table(result: dict, names: list[str] | None = None) -> str:
    """The side-by-side table of ``verify_models``' result, as Markdown.

    Args:
        result: what ``verify_models`` returned.
        names: display names per model (default: the model paths).
    """
    models = result["models"]
    fars = list(models[0]["report"]["tar_at_far"])
    head = (["model", "accuracy (%)", "threshold"] + [f"TAR@FAR={f} (%)" for f in fars]
            + ["EER (%)", "AUC", "cosine to first (mean / min)", "accuracy vs first (paired test)"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in zip(names or [m["name"] for m in models], models):
        r, agree, paired = m["report"], m["agreement"], m.get("paired")
        cells = ([name, f"{100 * r['accuracy']:.2f} +- {100 * r['accuracy_std']:.2f}", f"{r['threshold']:.3f}"]
                 + [f"{100 * r['tar_at_far'][f]:.2f}" for f in fars]
                 + [f"{100 * r['eer']:.2f}", f"{r['auc']:.4f}",
                    f"{agree['mean']:.4f} / {agree['min']:.4f}" if agree else "(reference)",
                    paired["text"] if paired else "(reference)"])
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
