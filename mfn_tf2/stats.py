"""Exact statistics for the kit's figures: a rate's interval, two models' paired difference.

A false accept rate measured as k false accepts among n different-person pairs
gets its exact (Clopper-Pearson) interval; two models scored on the same pairs
are compared pair by pair, the pairs they decide differently tested with the
exact McNemar test. Both sum binomial terms in log space, so n may be millions.

Example:
    >>> [round(v, 6) for v in clopper_pearson(29, 1_197_599)]
    [1.6e-05, 3.5e-05]
    >>> round(mcnemar_exact(33, 27), 2)
    0.52
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.metrics import MetricsError


def _binomial_cdf(k: int, n: int):
    """p -> P(X <= k) for X ~ Binomial(n, p), 0 <= k < n: the k + 1 terms summed in log space.

    log C(n, i) is built once as a cumulative sum of log((n - i + 1) / i), so
    each call is one vectorised pass (no factorial of n is ever formed).
    """
    i = np.arange(k + 1, dtype=np.float64)
    log_comb = np.r_[0.0, np.cumsum(np.log((n - i[1:] + 1) / i[1:]))]

    def cdf(p: float) -> float:
        logs = log_comb + i * np.log(p) + (n - i) * np.log1p(-p)
        top = logs.max()
        return float(min(1.0, np.exp(top) * np.sum(np.exp(logs - top))))
    return cdf


def _crossing(decreasing, target: float) -> float:
    """The p in (0, 1) where ``decreasing(p)`` falls through ``target`` (100 bisection steps:
    an absolute error below 1e-30, so even a rate of 1e-7 keeps all its digits)."""
    low, high = 0.0, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if decreasing(mid) > target else (low, mid)
    return (low + high) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a rate of k successes in n trials.

    Each bound is the rate at which seeing k or more (lower bound) or k or
    fewer (upper bound) successes has probability (1 - confidence) / 2. Trials
    are taken as independent: for face pairs that share images the interval
    is somewhat too narrow.

    Args:
        k: successes (e.g. false accepts), 0 <= k <= n.
        n: trials (e.g. different-person pairs), at least 1.
        confidence: the interval's coverage.

    Returns:
        (low, high), 0 <= low <= k / n <= high <= 1.

    Example:
        >>> [round(v, 4) for v in clopper_pearson(5, 10)]
        [0.1871, 0.8129]
        >>> [round(v, 4) for v in clopper_pearson(0, 10)]     # 1 - 0.025 ** (1 / 10)
        [0.0, 0.3085]
    """
    if not (n >= 1 and 0 <= k <= n and 0 < confidence < 1):
        raise MetricsError(f"need 0 <= k <= n, n >= 1 and confidence in (0, 1), got k={k}, n={n}, "
                           f"confidence={confidence}")
    if 2 * k > n:  # the mirror image sums fewer terms
        low, high = clopper_pearson(n - k, n, confidence)
        return 1.0 - high, 1.0 - low
    tail = (1.0 - confidence) / 2
    low = 0.0 if k == 0 else _crossing(_binomial_cdf(k - 1, n), 1.0 - tail)
    return low, _crossing(_binomial_cdf(k, n), tail)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: are b and c discordant pairs a fair coin's split?

    Args:
        b, c: pairs only the first / only the second model decided right.

    Returns:
        The p-value, 2 P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), at most
        1; 1.0 when there is no discordant pair.

    Example:
        >>> round(mcnemar_exact(8, 6), 4)                 # 2 * 6476 / 2 ** 14
        0.7905
        >>> mcnemar_exact(0, 0), round(mcnemar_exact(0, 10), 5)
        (1.0, 0.00195)
    """
    if b < 0 or c < 0:
        raise MetricsError(f"discordant pair counts must be 0 or more, got {b} and {c}")
    if b == c:
        return 1.0
    return min(1.0, 2 * _binomial_cdf(min(b, c), b + c)(0.5))


def paired_difference(correct_ref, correct_other) -> dict:
    """How two models decided the same pairs, and whether the difference is chance.

    Args:
        correct_ref: (N,) bool, the reference model right on each pair (``kfold_correct``).
        correct_other: (N,) bool, the other model on the same pairs.

    Returns:
        {"n_pairs", "gained" (other right, reference wrong), "lost" (the
        reverse), "difference_points" (100 * accuracy difference, other minus
        reference), "p_value", "test", "distinguishable" (p < 0.05), "text"}.

    Example:
        >>> ref = [True] * 290 + [False] * 8 + [True] * 6 + [False] * 296
        >>> other = [True] * 290 + [True] * 8 + [False] * 6 + [False] * 296
        >>> paired_difference(ref, other)["text"]
        '+0.33 point (8 pairs gained, 6 lost; exact McNemar p = 0.79: not distinguishable from chance)'
    """
    ref = np.asarray(correct_ref).reshape(-1)
    other = np.asarray(correct_other).reshape(-1)
    if ref.shape != other.shape or ref.size == 0 or ref.dtype != bool or other.dtype != bool:
        raise MetricsError(f"need two bool arrays of one length (right/wrong per pair), got {ref.size} "
                           f"{ref.dtype} and {other.size} {other.dtype}")
    gained, lost = int(np.sum(other & ~ref)), int(np.sum(ref & ~other))
    points = 100 * (gained - lost) / ref.size
    p = mcnemar_exact(gained, lost)
    verdict = "distinguishable from chance" if p < 0.05 else "not distinguishable from chance"
    return {"n_pairs": int(ref.size), "gained": gained, "lost": lost, "difference_points": points,
            "p_value": p, "test": "exact McNemar, two-sided", "distinguishable": bool(p < 0.05),
            "text": f"{points:+.2f} point{'s' if abs(points) > 1 else ''} ({gained} pairs gained, {lost} lost; "
                    f"exact McNemar p = {p:.2g}: {verdict})"}


__all__ = ["clopper_pearson", "mcnemar_exact", "paired_difference"]
