"""Verification metrics against hand-computed values and brute-force loops."""
import json

import numpy as np
import pytest

from mfn_tf2.metrics import (MetricsError, auc, best_threshold, cosine_agreement, eer,
                             kfold_accuracy, roc, row_cosine, tar_at_far,
                             verification_report)


def _noisy(seed, n=300, separation=1.0, ties=False):
    """Scores of n pairs, same pairs shifted up by ``separation`` std."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.normal(size=n) + separation * labels
    if ties:  # coarse scores, as an int8 model's cosines are
        scores = np.round(scores, 1)
    return scores, labels


def _brute_best(scores, labels):
    """Every midpoint threshold tried one by one, from the highest down.

    Returns:
        (threshold, accuracy); ties go to the highest threshold.
    """
    values = np.unique(scores)[::-1]
    candidates = np.r_[values[0] + 1, (values[1:] + values[:-1]) / 2, values[-1] - 1]
    accuracies = [np.mean((scores >= t) == labels) for t in candidates]
    k = int(np.argmax(accuracies))
    return candidates[k], accuracies[k]


def _brute_kfold(scores, labels, folds):
    out = []
    for fold in np.unique(folds):
        test = folds == fold
        t, _ = _brute_best(scores[~test], labels[~test])
        out.append(np.mean((scores[test] >= t) == labels[test]))
    return np.array(out)


def _brute_rates(scores, labels):
    """(far, tar) at every threshold t in the scores, accepting score >= t."""
    thresholds = np.unique(scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    far = np.array([np.mean(neg >= t) for t in thresholds])
    tar = np.array([np.mean(pos >= t) for t in thresholds])
    return far, tar, thresholds


def test_hand_computed_accuracy_and_threshold():
    # Accepting the top score only gets 3 of 4 right; so does accepting the
    # top three; the tie goes to the higher threshold.
    threshold, accuracy = best_threshold([0.75, 0.5, 0.25, 0.0], [1, 0, 1, 0])
    assert (threshold, accuracy) == (0.625, 0.75)
    assert best_threshold([0.5, 0.5, 0.5], [1, 0, 1])[1] == pytest.approx(2 / 3)


def test_hand_computed_kfold():
    # Fold 0's threshold (0.625, from fold 1) accepts its 0.625 negative.
    scores = [0.875, 0.625, 0.75, 0.5]
    result = kfold_accuracy(scores, [1, 0, 1, 0], [0, 0, 1, 1])
    mean, std, threshold, per_fold = result
    assert per_fold.tolist() == [0.5, 1.0]
    assert (mean, std, threshold) == (0.75, 0.25, 0.6875)
    assert result.held_out


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_best_threshold_matches_brute_force(seed, ties):
    scores, labels = _noisy(seed, ties=ties)
    threshold, accuracy = best_threshold(scores, labels)
    expected_threshold, expected_accuracy = _brute_best(scores, labels)
    assert (threshold, accuracy) == pytest.approx((expected_threshold, expected_accuracy))
    assert np.mean((scores >= threshold) == labels) == pytest.approx(accuracy)


@pytest.mark.parametrize("seed, ties", [(3, False), (4, True)])
def test_kfold_matches_brute_force(seed, ties):
    scores, labels = _noisy(seed, n=400, ties=ties)
    folds = np.repeat(np.arange(10), 40)
    result = kfold_accuracy(scores, labels, folds)
    expected = _brute_kfold(scores, labels, folds)
    np.testing.assert_allclose(result.per_fold, expected)
    assert result.mean == pytest.approx(expected.mean())
    assert result.std == pytest.approx(expected.std())
    # Held-out thresholds can only do worse than the best one chosen on all pairs.
    assert result.mean <= best_threshold(scores, labels)[1] + 1e-12


def test_single_fold_falls_back_and_says_so():
    scores, labels = _noisy(5)
    result = kfold_accuracy(scores, labels, np.zeros(len(scores), int))
    assert not result.held_out and len(result.per_fold) == 1
    assert (result.threshold, result.mean) == best_threshold(scores, labels)
    report = verification_report(scores, labels, np.zeros(len(scores), int))
    assert report["protocol"] == "best_threshold_on_all_pairs" and report["n_folds"] == 1


def test_roc_matches_brute_force_rates():
    scores, labels = _noisy(6, ties=True)
    far, tar, thresholds = roc(scores, labels)
    assert (far[0], tar[0], far[-1], tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(thresholds) < 0) and thresholds[0] > scores.max()
    b_far, b_tar, b_thr = _brute_rates(scores, labels)
    np.testing.assert_allclose(far[1:], b_far[::-1])
    np.testing.assert_allclose(tar[1:], b_tar[::-1])
    np.testing.assert_array_equal(thresholds[1:], b_thr[::-1])


def test_hand_computed_tar_at_far():
    # Negatives at 0.7 and 0.2: FAR 0 allows accepting down to 0.8 only.
    scores, labels = [0.9, 0.8, 0.7, 0.6, 0.2], [1, 1, 0, 1, 0]
    assert tar_at_far(scores, labels, 0.0) == (pytest.approx(2 / 3), 0.8)
    assert tar_at_far(scores, labels, 0.5) == (1.0, 0.6)
    assert tar_at_far(scores, labels, 1.0) == (1.0, 0.2)
    # A negative on top: nothing can be accepted at FAR 0.
    tar, threshold = tar_at_far([0.9, 0.5], [0, 1], 0.0)
    assert tar == 0.0 and threshold > 0.9
    with pytest.raises(MetricsError, match="far_target must be in"):
        tar_at_far(scores, labels, -0.1)


@pytest.mark.parametrize("target", [0.0, 1e-2, 0.1, 0.5])
def test_tar_at_far_matches_brute_force(target):
    scores, labels = _noisy(7, n=500, ties=True)
    b_far, b_tar, _ = _brute_rates(scores, labels)
    allowed = b_tar[b_far <= target]
    expected = allowed.max() if allowed.size else 0.0
    tar, threshold = tar_at_far(scores, labels, target)
    assert tar == pytest.approx(expected)
    assert np.mean(scores[labels == 0] >= threshold) <= target
    assert np.mean(scores[labels == 1] >= threshold) == pytest.approx(tar)


def test_eer_and_auc_hand_computed_and_separable():
    # ROC (far, tar): (0,0) (0,.5) (1/3,.5) (1/3,1): FRR crosses FAR=1/3
    # on the vertical step.
    scores, labels = [0.9, 0.8, 0.4, 0.3, 0.2], [1, 0, 1, 0, 0]
    assert eer(scores, labels) == pytest.approx(1 / 3)
    assert auc(scores, labels) == pytest.approx(5 / 6)
    assert eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 0.0
    assert auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0


@pytest.mark.parametrize("seed, separation", [(8, 0.0), (9, 1.5)])
def test_eer_and_auc_on_random_scores(seed, separation):
    scores, labels = _noisy(seed, n=2000, separation=separation, ties=True)
    pos, neg = scores[labels == 1], scores[labels == 0]
    u = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    assert auc(scores, labels) == pytest.approx(u)
    far, tar, _ = _brute_rates(scores, labels)
    frr = 1 - tar
    value = eer(scores, labels)
    # The crossing lies between these two brute-force bounds.
    assert np.min((far + frr) / 2) - 1e-12 <= value <= np.min(np.maximum(far, frr)) + 1e-12
    if separation == 0.0:
        assert abs(value - 0.5) < 0.05 and abs(auc(scores, labels) - 0.5) < 0.05


def test_verification_report_is_json_ready():
    scores, labels = _noisy(10, n=600)
    folds = np.repeat(np.arange(10), 60)
    report = verification_report(scores, labels, folds, far_targets=(1e-3, 1e-2))
    text = json.dumps(report, allow_nan=False)
    back = json.loads(text)
    assert set(back["tar_at_far"]) == {"0.001", "0.01"} == set(back["threshold_at_far"])
    assert back["n_pairs"] == 600 and back["n_folds"] == 10 and back["protocol"] == "kfold"
    assert back["n_positive"] + back["n_negative"] == 600
    assert back["n_positive"] == int(labels.sum())
    assert back["accuracy"] == pytest.approx(kfold_accuracy(scores, labels, folds).mean)
    assert back["tar_at_far"]["0.01"] == pytest.approx(tar_at_far(scores, labels, 1e-2)[0])
    assert 0.0 < back["eer"] < 0.5 < back["auc"] < 1.0


@pytest.mark.parametrize("scores, labels, needle", [
    ([0.1, 0.2], [1], "as many labels"),
    ([0.1, np.nan], [1, 0], "NaN"),
    ([0.1, 0.2], [1, 2], r"0 \(different\) or 1"),
    ([0.1, 0.2], [1, 1], "one different pair"),
])
def test_bad_inputs_raise_one_line(scores, labels, needle):
    with pytest.raises(MetricsError, match=needle):
        roc(scores, labels)


def test_cosine_agreement():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(50, 16))
    same = cosine_agreement(a, a * rng.uniform(0.5, 2.0, size=(50, 1)))
    assert same["mean"] == pytest.approx(1.0) and same["min"] == pytest.approx(1.0)
    b = a.copy()
    b[3] = -b[3]
    flipped = cosine_agreement(a, b)
    assert flipped["min"] == pytest.approx(-1.0)
    assert flipped["mean"] == pytest.approx(48 / 50)
    np.testing.assert_allclose(row_cosine(a, b)[:3], 1.0)
    with pytest.raises(MetricsError, match="one shape"):
        cosine_agreement(a, a[:, :8])
