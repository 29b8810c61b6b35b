"""Operating thresholds measured on every pair of a face folder, with their uncertainty.

An app decides "same person" when the cosine of two embeddings is at least a
threshold; the threshold sets the false accept rate (FAR). Measuring FAR 1e-3
takes far more different-person pairs than a pairs file holds (600 give 0.6
false accepts), so ``calibrate`` embeds every image of a folder of identity
sub-folders once and scores every pair among them: 1,549 images of 890 people
give 1,197,599 different-person (impostor) pairs and 1,327 same-person
(genuine) ones. The impostor scores are computed from the embedding matrix in
row blocks, keeping only the highest ones any target needs, so memory stays
bounded however many pairs there are.

For each target FAR: the threshold (the smallest observed cosine whose
measured FAR is at most the target), the FAR met, its Clopper-Pearson 95 %
interval, the TAR and a 95 % interval for it from a bootstrap over identities
(pairs of one person are not independent). A target that allows fewer than
``MIN_FALSE_ACCEPTS`` false accepts among the impostor pairs is reported as not
measurable, never extrapolated.

Example:
    >>> from mfn_tf2.embedders import FeatureExtractor
    >>> result = calibrate(FeatureExtractor("android_demo_assets/model_int8.tflite"), "data/lfw_demo/heldout")
    >>> result["impostor_pairs"], result["points"][1]["far"], result["points"][1]["measurable"]
    (1197599, 0.001, True)
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from mfn_tf2.config import FAR_TARGETS
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.folders import scan_folder
from mfn_tf2.images import warn_skipped
from mfn_tf2.stats import clopper_pearson

# A FAR target is measured only when it allows at least this many false accepts.
MIN_FALSE_ACCEPTS = 10
BOOTSTRAP_RESAMPLES = 1000
# Scores per row block of the N x N cosine matrix (float32: 16 MB).
_BLOCK_SCORES = 1 << 22
# Relative slack on target * pairs: 1e-6 as a double is a hair below one millionth.
_SLACK = 1e-9

METHODS = {"far_interval": "Clopper-Pearson 95 %",
           "tar_interval": f"bootstrap over identities, 95 %, {BOOTSTRAP_RESAMPLES} resamples"}


class CalibrationError(ValueError):
    """A folder that cannot measure thresholds; the message names it and says what is missing."""


class FaceListing(NamedTuple):
    """The images of a folder of identity sub-folders, grouped by identity.

    ``identity[i]`` is the identity index (0..K-1, in name order) of ``paths[i]``;
    images of one identity are consecutive.
    """
    folder: str
    paths: list[str]
    identity: np.ndarray  # (N,) int
    identities: int
    genuine_pairs: int
    impostor_pairs: int
    skipped: dict


def allowed_false_accepts(far: float, impostor_pairs: int) -> int:
    """The most false accepts a FAR target allows among ``impostor_pairs`` pairs.

    Example:
        >>> allowed_false_accepts(1e-3, 1197599), allowed_false_accepts(1e-6, 10_000_000)
        (1197, 10)
    """
    return math.floor(far * impostor_pairs * (1 + _SLACK))


def list_faces(folder: str, far_targets=FAR_TARGETS, flag: str = "FOLDER") -> FaceListing:
    """Lists a folder's readable images and checks it can measure at least one target.

    Args:
        folder: one sub-folder per identity.
        far_targets: the FARs to be measured.
        flag: how error messages name the folder (a flag or argument name).

    Returns:
        A FaceListing; unreadable files and empty identity folders are counted
        in ``skipped`` (and the files logged once).

    Raises:
        DataError: the folder is missing or not laid out as identity folders.
        CalibrationError: fewer than 2 identities with images, no identity
            with 2 images, or too few different-person pairs for every target.

    Example:
        >>> faces = list_faces("data/lfw_demo/heldout")
        >>> len(faces.paths), faces.identities, faces.genuine_pairs, faces.impostor_pairs
        (1549, 890, 1327, 1197599)
    """
    identities, skipped = scan_folder(folder, flag, min_identities=2)
    warn_skipped(skipped)
    groups = [[path for path, _ in images] for _, images in sorted(identities.items()) if images]
    where = f"{flag} {folder}"
    if len(groups) < 2:
        raise CalibrationError(f"{where}: {len(groups)} identity folder(s) with readable images; "
                               "different-person pairs need at least 2")
    sizes = np.array([len(g) for g in groups])
    images = int(sizes.sum())
    genuine = int(np.sum(sizes * (sizes - 1) // 2))
    impostor = images * (images - 1) // 2 - genuine
    if genuine == 0:
        raise CalibrationError(f"{where}: no identity folder has 2 readable images; the true accept "
                               "rate needs same-person pairs")
    loosest = max(far_targets)
    if allowed_false_accepts(loosest, impostor) < MIN_FALSE_ACCEPTS:
        raise CalibrationError(f"{where}: {images} images give {impostor} different-person pairs, too few "
                               f"to measure FAR {loosest:g} (it needs {math.ceil(MIN_FALSE_ACCEPTS / loosest)}); "
                               "add images or identities")
    return FaceListing(folder, [p for g in groups for p in g], np.repeat(np.arange(len(groups)), sizes),
                       len(groups), genuine, impostor,
                       {"files": len(skipped), "empty_identities": len(identities) - len(groups)})


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """The k largest of ``values`` (all of them when fewer), unordered."""
    if values.size <= k:
        return values
    return np.partition(values, values.size - k)[values.size - k:] if k > 0 else values[:0]


def score_pairs(emb: np.ndarray, identity: np.ndarray, keep: int, block_scores: int = _BLOCK_SCORES):
    """Every pair's cosine from unit embeddings, in row blocks of the N x N matrix.

    Args:
        emb: (N, D) float32 L2-normalised embeddings.
        identity: (N,) identity index of each row, rows of one identity consecutive.
        keep: how many of the highest impostor scores to keep.
        block_scores: scores computed at once (rows per block = block_scores // N).

    Returns:
        (top impostor scores (<= keep,) float32 descending, genuine scores (G,)
        float32, the identity of each genuine pair (G,)).
    """
    n = len(emb)
    ends = np.searchsorted(identity, identity, side="right")  # one past each row's identity group
    cols = np.arange(n)
    top, genuine, owners = np.zeros(0, np.float32), [], []
    step = max(1, block_scores // max(n, 1))
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        block = emb[rows] @ emb.T  # (B, N) cosines
        # Each unordered pair once: an impostor column lies past the row's group, a genuine one
        # inside it after the row.
        impostor = cols[None, :] >= ends[rows][:, None]
        same = (cols[None, :] > rows[:, None]) & ~impostor
        genuine.append(block[same])
        owners.append(np.broadcast_to(identity[rows][:, None], block.shape)[same])
        top = _top(np.concatenate([top, block[impostor]]), keep)
    return np.sort(top)[::-1], np.concatenate(genuine), np.concatenate(owners)


def _threshold(top: np.ndarray, genuine: np.ndarray, allowed: int) -> float:
    """The smallest observed score above the (allowed + 1)-th highest impostor score."""
    first_rejected = top[allowed]
    above = np.r_[top[top > first_rejected], genuine[genuine > first_rejected]]
    return float(above.min() if above.size else np.nextafter(first_rejected, np.float32(np.inf)))


def measure(emb: np.ndarray, identity: np.ndarray, far_targets=FAR_TARGETS, seed: int = 0) -> list[dict]:
    """Threshold, FAR and TAR with their intervals at each target, from every pair's score.

    Args:
        emb: (N, D) L2-normalised embeddings.
        identity: (N,) identity index (0..K-1) of each row.
        far_targets: the FARs asked for.
        seed: seeds the bootstrap.

    Returns:
        One dict per target, in the order asked: {"far", "measurable",
        "cosine", "far_measured", "far_ci95", "tar", "tar_ci95",
        "false_accepts", "note"} (the figures None when not measurable).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> emb = rng.normal(size=(200, 8)); emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        >>> point = measure(emb.astype(np.float32), np.arange(200) // 4, far_targets=(0.01,))[0]
        >>> point["false_accepts"] <= 0.01 * (200 * 199 // 2 - 50 * 6), point["measurable"]
        (True, True)
    """
    order = np.argsort(identity, kind="stable")  # score_pairs takes each identity's rows together
    identity = np.asarray(identity)[order]
    sizes = np.bincount(identity)
    n = len(identity)
    impostors = n * (n - 1) // 2 - int(np.sum(sizes * (sizes - 1) // 2))
    if not impostors or np.all(sizes < 2):
        raise CalibrationError(f"{n} embeddings of {np.count_nonzero(sizes)} identities: need different-person "
                               "and same-person pairs")
    allowed = [(far, allowed_false_accepts(far, impostors)) for far in far_targets]
    keep = max((k for _, k in allowed if k >= MIN_FALSE_ACCEPTS), default=-1) + 1
    top, genuine, owners = score_pairs(np.asarray(emb, np.float32)[order], identity, keep)
    # Bootstrap over identities with same-person pairs: (resamples, identities) draw counts.
    pairs_per_id = np.bincount(owners, minlength=sizes.size)
    with_pairs = np.flatnonzero(pairs_per_id)
    draws = np.random.default_rng(seed).multinomial(
        with_pairs.size, np.full(with_pairs.size, 1 / with_pairs.size), size=BOOTSTRAP_RESAMPLES)
    drawn_pairs = draws @ pairs_per_id[with_pairs]
    points = []
    for far, k in allowed:
        if k < MIN_FALSE_ACCEPTS:
            points.append({"far": far, "measurable": False, "cosine": None, "far_measured": None,
                           "far_ci95": None, "tar": None, "tar_ci95": None, "false_accepts": None,
                           "note": f"not measurable with {impostors:,} impostor pairs (FAR {far:g} "
                                   f"needs {math.ceil(MIN_FALSE_ACCEPTS / far):,})"})
            continue
        cosine = _threshold(top, genuine, k)
        false_accepts = int(np.sum(top >= cosine))
        accepted = genuine >= cosine
        resampled = draws @ np.bincount(owners[accepted], minlength=sizes.size)[with_pairs] / drawn_pairs
        points.append({"far": far, "measurable": True, "cosine": cosine,
                       "far_measured": false_accepts / impostors,
                       "far_ci95": list(clopper_pearson(false_accepts, impostors)),
                       "tar": float(accepted.mean()),
                       "tar_ci95": [float(v) for v in np.percentile(resampled, [2.5, 97.5])],
                       "false_accepts": false_accepts, "note": ""})
    return points


def calibrate_listing(extractor: FeatureExtractor, faces: FaceListing, far_targets=FAR_TARGETS,
                      seed: int = 0, progress: bool = False) -> dict:
    """``calibrate`` on an already listed folder (the export lists it once for every file)."""
    emb = extractor.embed_paths(faces.paths, progress=progress)
    return {"folder": faces.folder, "model": extractor.name, "images": len(faces.paths),
            "identities": faces.identities, "impostor_pairs": faces.impostor_pairs,
            "genuine_pairs": faces.genuine_pairs, "skipped": faces.skipped, "methods": METHODS,
            "points": measure(emb, faces.identity, far_targets, seed)}


def calibrate(extractor: FeatureExtractor, folder: str, far_targets=FAR_TARGETS, seed: int = 0,
              progress: bool = False, flag: str = "FOLDER") -> dict:
    """Embeds every image of ``folder`` once and measures a threshold at each target FAR.

    Args:
        extractor: the model (its own scores: an int8 file gets its own thresholds).
        folder: one sub-folder per identity.
        far_targets: the FARs asked for.
        seed: seeds the TAR bootstrap.
        progress: show a progress bar while embedding.
        flag: how error messages name the folder.

    Returns:
        {"folder", "model", "images", "identities", "impostor_pairs",
        "genuine_pairs", "skipped": {"files", "empty_identities"}, "methods",
        "points": ``measure``'s list}.

    Raises:
        DataError, CalibrationError: see ``list_faces``; ImageError: an image
        that passed the listing's probe but does not decode.
    """
    return calibrate_listing(extractor, list_faces(folder, far_targets, flag), far_targets, seed, progress)


def _interval(value: float, interval: list, form: str) -> str:
    """"0.5 [0.2, 0.8]": a value and its interval in one format."""
    return f"{value:{form}} [{interval[0]:{form}}, {interval[1]:{form}}]"


def thresholds_markdown(points: list[dict]) -> list[str]:
    """A Markdown table of threshold points; a "file" key in the points adds a file column.

    Example:
        >>> print("\\n".join(thresholds_markdown([{"far": 0.01, "measurable": False, "note": "not measurable"}])))
        | FAR target | cosine >= | FAR measured [95 % CI] | false accepts | TAR [95 % CI] |
        |---|---|---|---|---|
        | 0.01 | - | not measurable | - | - |
    """
    by_file = any("file" in p for p in points)
    head = (["file"] if by_file else []) + ["FAR target", "cosine >=", "FAR measured [95 % CI]",
                                            "false accepts", "TAR [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = ([f"`{p['file']}`"] if by_file else []) + [f"{p['far']:g}"]
        if p["measurable"]:
            cells += [f"{p['cosine']:.4f}", _interval(p["far_measured"], p["far_ci95"], ".3g"),
                      f"{p['false_accepts']:,}", _interval(p["tar"], p["tar_ci95"], ".1%")]
        else:
            cells += ["-", p.get("note") or "not measurable", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


__all__ = ["CalibrationError", "FaceListing", "MIN_FALSE_ACCEPTS", "METHODS", "FAR_TARGETS",
           "allowed_false_accepts", "list_faces", "score_pairs", "measure", "calibrate_listing", "calibrate",
           "thresholds_markdown"]
