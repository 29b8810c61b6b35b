"""Face verification metrics on pair scores, with the LFW conventions.

Every function takes ``scores`` (higher = more similar, e.g. the cosine of two
embeddings) and ``labels`` (1 = same person, 0 = different) of N pairs. A
pair is accepted as "same" when ``score >= threshold``.

Everything is exact: the candidate thresholds are the scores themselves (ROC)
or the midpoints between consecutive distinct sorted scores (accuracy), never
a fixed grid, so results do not depend on a step size. Accuracies, rates, EER
and AUC are fractions in [0, 1].

Example:
    >>> import numpy as np
    >>> scores = np.array([0.75, 0.5, 0.25, 0.0]); labels = np.array([1, 0, 1, 0])
    >>> best_threshold(scores, labels)
    (0.625, 0.75)
    >>> auc(scores, labels)
    0.75
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MetricsError(ValueError):
    """Scores and labels that no metric can be computed on."""


def _check(scores, labels, need_both=True) -> tuple[np.ndarray, np.ndarray]:
    """float64 scores (N,) and bool labels (N,), validated."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape or scores.size == 0:
        raise MetricsError(f"need as many labels as scores (got {scores.size} scores, "
                           f"{labels.size} labels), at least one of each")
    if not np.isfinite(scores).all():
        raise MetricsError("scores contain NaN or inf: check the embeddings for NaN")
    if not np.isin(labels, (0, 1)).all():
        raise MetricsError("labels must be 0 (different) or 1 (same)")
    labels = labels.astype(bool)
    if need_both and (labels.all() or not labels.any()):
        raise MetricsError("need at least one same pair and one different pair")
    return scores, labels


def _operating_points(scores: np.ndarray, labels: np.ndarray):
    """Accepted counts at each distinct score, from the highest down.

    Returns:
        (distinct scores descending (K,), true accepts (K,), false accepts (K,)),
        point k accepting every pair with score >= distinct[k].
    """
    order = np.argsort(-scores, kind="stable")
    ranked, same = scores[order], labels[order]
    true_accepts, false_accepts = np.cumsum(same), np.cumsum(~same)
    # The last pair of a run of equal scores: ties are accepted together.
    last = np.r_[ranked[1:] != ranked[:-1], True]
    return ranked[last], true_accepts[last], false_accepts[last]


def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC curve, one point per distinct score.

    Args:
        scores: (N,) similarity of each pair.
        labels: (N,) 1 = same person, 0 = different.

    Returns:
        (far, tar, thresholds), each (K + 1,), thresholds decreasing. The first
        point accepts nothing (threshold just above the highest score, so it
        stays finite and JSON-safe); the last accepts every pair.

    Example:
        >>> far, tar, thr = roc([0.9, 0.8, 0.3], [1, 0, 1])
        >>> far.tolist(), tar.tolist()
        ([0.0, 0.0, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0])
    """
    scores, labels = _check(scores, labels)
    distinct, tp, fp = _operating_points(scores, labels)
    thresholds = np.r_[np.nextafter(distinct[0], np.inf), distinct]
    tar = np.r_[0, tp] / labels.sum()
    far = np.r_[0, fp] / (~labels).sum()
    return far, tar, thresholds


def tar_at_far(scores, labels, far_target: float) -> tuple[float, float]:
    """The highest true accept rate whose false accept rate is <= far_target.

    Returns:
        (tar, threshold): accept pairs with score >= threshold.

    Example:
        >>> tar_at_far([0.9, 0.8, 0.7, 0.1], [1, 1, 0, 0], 0.0)
        (1.0, 0.8)
    """
    if not 0.0 <= far_target <= 1.0:
        raise MetricsError(f"far_target must be in [0, 1], got {far_target}")
    far, tar, thresholds = roc(scores, labels)
    # far and tar both grow along the curve: the last allowed point is best.
    k = np.searchsorted(far, far_target, side="right") - 1
    return float(tar[k]), float(thresholds[k])


def _accuracy_curve(scores: np.ndarray, labels: np.ndarray):
    """(thresholds (K + 1,), accuracies (K + 1,)) of every distinct decision.

    Thresholds are midpoints between consecutive distinct scores, plus one
    above the highest and one below the lowest, decreasing.
    """
    distinct, tp, fp = _operating_points(scores, labels)
    n_negative = (~labels).sum()
    correct = np.r_[n_negative, tp + n_negative - fp]
    upper = np.r_[np.nextafter(distinct[0], np.inf), distinct]
    lower = np.r_[distinct, np.nextafter(distinct[-1], -np.inf)]
    mid = lower + (upper - lower) / 2
    # Two adjacent floats can round their midpoint onto the lower one, which
    # would then be accepted: fall back to the upper score.
    thresholds = np.where(mid > lower, mid, upper)
    return thresholds, correct / scores.size


def best_threshold(scores, labels) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs.

    Ties go to the highest threshold (fewest false accepts), as insightface's
    argmax over ascending distance thresholds does.

    Returns:
        (threshold, accuracy).

    Example:
        >>> best_threshold([0.9, 0.7, 0.4, 0.2], [1, 1, 0, 0])
        (0.55, 1.0)
    """
    scores, labels = _check(scores, labels, need_both=False)
    thresholds, accuracies = _accuracy_curve(scores, labels)
    k = int(np.argmax(accuracies))
    return float(thresholds[k]), float(accuracies[k])


def accuracy_at(scores, labels, threshold: float) -> float:
    """Share of pairs decided right when accepting score >= threshold."""
    scores, labels = _check(scores, labels, need_both=False)
    return float(np.mean((scores >= threshold) == labels))


class KFoldResult(NamedTuple):
    """Cross-validated accuracy: unpacks as (mean, std, threshold, per_fold).

    ``per_fold`` has one accuracy per fold; ``held_out`` is False when there
    was a single fold, whose threshold was then chosen on its own pairs (an
    optimistic number, not the LFW protocol).
    """
    mean: float
    std: float
    threshold: float
    per_fold: np.ndarray

    @property
    def held_out(self) -> bool:
        return len(self.per_fold) > 1


def _fold_splits(scores: np.ndarray, labels: np.ndarray, folds) -> list[tuple[np.ndarray, float]]:
    """[(test mask (N,), threshold chosen on the other folds)] per fold.

    With a single fold the threshold is that fold's own best one (see ``KFoldResult``).
    """
    folds = np.asarray(folds).reshape(-1)
    if folds.shape != scores.shape:
        raise MetricsError(f"need one fold id per pair (got {folds.size} for {scores.size})")
    fold_ids = np.unique(folds)
    if fold_ids.size == 1:
        return [(np.ones(scores.size, bool), best_threshold(scores, labels)[0])]
    return [(folds == fold, best_threshold(scores[folds != fold], labels[folds != fold])[0])
            for fold in fold_ids]


def kfold_accuracy(scores, labels, folds) -> KFoldResult:
    """The LFW protocol: each fold is scored at the threshold of the others.

    Args:
        scores: (N,) pair similarities.
        labels: (N,) 1 = same.
        folds: (N,) fold id of each pair (any integers).

    Returns:
        KFoldResult(mean, std, threshold, per_fold): mean and (population)
        std of the per-fold accuracies, the mean of the chosen thresholds.

    Example:
        >>> r = kfold_accuracy([.9, .2, .8, .3], [1, 0, 1, 0], [0, 0, 1, 1])
        >>> r.mean, r.held_out
        (1.0, True)
    """
    scores, labels = _check(scores, labels, need_both=False)
    splits = _fold_splits(scores, labels, folds)
    accuracies = np.array([accuracy_at(scores[test], labels[test], threshold) for test, threshold in splits])
    return KFoldResult(float(accuracies.mean()), float(accuracies.std()),
                       float(np.mean([threshold for _, threshold in splits])), accuracies)


def kfold_correct(scores, labels, folds) -> np.ndarray:
    """Per pair: decided right at the threshold ``kfold_accuracy`` chose on the other folds.

    Two models' arrays on the same pairs feed ``stats.paired_difference``.

    Args:
        scores, labels, folds: as in ``kfold_accuracy``.

    Returns:
        (N,) bool; its mean per fold is ``kfold_accuracy``'s ``per_fold``.

    Example:
        >>> kfold_correct([.875, .625, .75, .5], [1, 0, 1, 0], [0, 0, 1, 1]).tolist()
        [True, False, True, True]
    """
    scores, labels = _check(scores, labels, need_both=False)
    correct = np.zeros(scores.size, bool)
    for test, threshold in _fold_splits(scores, labels, folds):
        correct[test] = (scores[test] >= threshold) == labels[test]
    return correct


def eer(scores, labels) -> float:
    """Equal error rate: where the false accept rate meets the false reject rate.

    Linear interpolation between the two ROC points that straddle the
    crossing (as facenet's brentq on the interpolated curve).

    Example:
        >>> eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
        0.0
    """
    far, tar, _ = roc(scores, labels)
    gap = far - (1.0 - tar)  # rises from -1 (accept none) to +1 (accept all)
    k = int(np.argmax(gap >= 0))
    if gap[k] == 0:
        return float(far[k])
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def auc(scores, labels) -> float:
    """Area under the exact ROC curve (ties count half, as Mann-Whitney U)."""
    far, tar, _ = roc(scores, labels)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2))


def verification_report(scores, labels, folds, far_targets=(1e-2,)) -> dict:
    """Every verification number of one model on one pair set, JSON-ready.

    Args:
        scores, labels, folds: as in ``kfold_accuracy``.
        far_targets: false accept rates at which TAR is reported.

    Returns:
        {"accuracy", "accuracy_std", "threshold", "protocol", "tar_at_far":
        {str(far): tar}, "threshold_at_far": {str(far): threshold}, "eer",
        "auc", "n_pairs", "n_positive", "n_negative", "n_folds"}; "protocol"
        is "kfold" or, with one fold, "best_threshold_on_all_pairs".

    Example:
        >>> verification_report([.9, .2, .8, .3], [1, 0, 1, 0], [0, 0, 1, 1])["eer"]
        0.0
    """
    result = kfold_accuracy(scores, labels, folds)
    at_far = {str(far): tar_at_far(scores, labels, far) for far in far_targets}
    labels = np.asarray(labels).reshape(-1)
    return {
        "accuracy": result.mean,
        "accuracy_std": result.std,
        "threshold": result.threshold,
        "protocol": "kfold" if result.held_out else "best_threshold_on_all_pairs",
        "tar_at_far": {far: tar for far, (tar, _) in at_far.items()},
        "threshold_at_far": {far: thr for far, (_, thr) in at_far.items()},
        "eer": eer(scores, labels),
        "auc": auc(scores, labels),
        "n_pairs": int(labels.size),
        "n_positive": int((labels == 1).sum()),
        "n_negative": int((labels == 0).sum()),
        "n_folds": len(result.per_fold),
    }


def row_cosine(a, b) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``.

    Args:
        a, b: (N, D) embeddings (need not be normalised).

    Returns:
        (N,) float64; an all-zero row scores 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise MetricsError(f"need two (N, D) embedding matrices of one shape, got "
                           f"{a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def cosine_agreement(emb_a, emb_b) -> dict:
    """How close two models' embeddings of the same images are.

    Returns:
        {"mean": float, "min": float} of the row-wise cosines.

    Example:
        >>> cosine_agreement([[1.0, 0.0], [0.0, 2.0]], [[1.0, 0.0], [0.0, 1.0]])
        {'mean': 1.0, 'min': 1.0}
    """
    cosines = row_cosine(emb_a, emb_b)
    return {"mean": float(cosines.mean()), "min": float(cosines.min())}


__all__ = ["MetricsError", "KFoldResult", "roc", "tar_at_far", "best_threshold",
           "accuracy_at", "kfold_accuracy", "kfold_correct", "eer", "auc", "verification_report",
           "row_cosine", "cosine_agreement"]
