"""Verification metrics and their statistics (stats.py) against hand-computed values and brute-force loops."""
import json
import math
import re

import numpy as np
import pytest

from mfn_tf2.metrics import (MetricsError, auc, best_threshold, cosine_agreement, eer, kfold_accuracy,
                             kfold_correct, roc, row_cosine, tar_at_far, verification_report)
from mfn_tf2.stats import clopper_pearson, mcnemar_exact, paired_difference


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


def _binomial_cdf_exact(k, n, p):
    """P(X <= k), X ~ Binomial(n, p), summed term by term with exact binomial coefficients."""
    return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 20), (3, 20), (10, 20), (19, 20), (7, 400), (380, 400)])
def test_clopper_pearson_bounds_meet_their_definition(k, n):
    low, high = clopper_pearson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    # Seeing k or more at the lower bound, k or fewer at the upper bound: 2.5 % each.
    if k > 0:
        assert 1 - _binomial_cdf_exact(k - 1, n, low) == pytest.approx(0.025, rel=1e-6)
    else:
        assert low == 0.0
    if k < n:
        assert _binomial_cdf_exact(k, n, high) == pytest.approx(0.025, rel=1e-6)
    else:
        assert high == 1.0


def test_clopper_pearson_known_values_and_large_n():
    # k = 0: the upper bound has a closed form, 1 - (alpha / 2) ** (1 / n).
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025 ** 0.1, rel=1e-9)
    assert clopper_pearson(0, 1_197_599)[1] == pytest.approx(1 - 0.025 ** (1 / 1_197_599), rel=1e-6)
    # Published values (e.g. R's binom.test(5, 10)): 0.1870860, 0.8129140.
    assert clopper_pearson(5, 10) == pytest.approx((0.1870860, 0.8129140), abs=1e-7)
    low, high = clopper_pearson(1197, 1_197_599)
    assert low < 1197 / 1_197_599 < high and high - low < 2.5e-4
    assert clopper_pearson(3, 20, confidence=0.5)[1] < clopper_pearson(3, 20)[1]
    for bad in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(MetricsError, match="need 0 <= k <= n"):
            clopper_pearson(*bad)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (8, 6), (6, 8), (5, 5), (0, 10), (13, 40), (300, 350)])
def test_mcnemar_matches_exact_binomial_sum(b, c):
    n, k = b + c, min(b, c)
    expected = 1.0 if n == 0 else min(1.0, 2 * math.fsum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)
    with pytest.raises(MetricsError, match="0 or more"):
        mcnemar_exact(-1, 3)


@pytest.mark.parametrize("seed, ties", [(12, False), (13, True)])
def test_kfold_correct_is_kfold_accuracy_per_pair(seed, ties):
    scores, labels = _noisy(seed, n=400, ties=ties)
    folds = np.repeat(np.arange(10), 40)
    correct = kfold_correct(scores, labels, folds)
    assert correct.dtype == bool and correct.shape == (400,)
    per_fold = [correct[folds == f].mean() for f in range(10)]
    np.testing.assert_allclose(per_fold, kfold_accuracy(scores, labels, folds).per_fold)
    np.testing.assert_allclose(per_fold, _brute_kfold(scores, labels, folds))
    one = kfold_correct(scores, labels, np.zeros(400, int))
    assert one.mean() == pytest.approx(best_threshold(scores, labels)[1])


def test_paired_difference_counts_and_text():
    rng = np.random.default_rng(14)
    ref = rng.random(600) < 0.9
    other = ref.copy()
    flip = rng.choice(600, 40, replace=False)
    other[flip] = ~other[flip]
    result = paired_difference(ref, other)
    gained, lost = int(np.sum(other & ~ref)), int(np.sum(ref & ~other))
    assert (result["gained"], result["lost"], result["n_pairs"]) == (gained, lost, 600) and gained + lost == 40
    assert result["difference_points"] == pytest.approx(100 * (other.mean() - ref.mean()))
    assert result["p_value"] == mcnemar_exact(gained, lost)
    assert result["distinguishable"] == (result["p_value"] < 0.05)
    assert result["test"] == "exact McNemar, two-sided"
    assert re.fullmatch(r"[+-]\d+\.\d\d points? \(\d+ pairs gained, \d+ lost; exact McNemar p = \S+: "
                        r"(not )?distinguishable from chance\)", result["text"]), result["text"]
    # 0 gained, 20 lost out of 100: -20 points, p = 2 / 2 ** 20.
    clear = paired_difference(np.ones(100, bool), np.r_[np.zeros(20, bool), np.ones(80, bool)])
    assert clear["distinguishable"] and clear["text"] == (
        "-20.00 points (0 pairs gained, 20 lost; exact McNemar p = 1.9e-06: distinguishable from chance)")
    same = paired_difference(ref, ref)
    assert same["p_value"] == 1.0 and same["text"].startswith("+0.00 point (0 pairs gained, 0 lost")
    with pytest.raises(MetricsError, match="two bool arrays"):
        paired_difference(ref, other[:10])
    with pytest.raises(MetricsError, match="two bool arrays"):
        paired_difference(ref.astype(int), other)
