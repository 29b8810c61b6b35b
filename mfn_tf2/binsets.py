"""insightface verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...), scored as insightface does.

A ``.bin`` is a pickle of ``(images, issame)``: 2N encoded images (JPEG/PNG
bytes) and N booleans; pair i is images 2i and 2i+1. insightface's
``verification.py`` embeds every image (and its mirror), L2-normalises, and
reports the 10-fold accuracy with the folds cut as ``KFold(10, shuffle=False)``:
10 contiguous blocks of pairs. "Accuracy" uses the image's embedding alone,
"Accuracy-Flip" the sum of the image's and its mirror's embeddings,
normalised. Both are computed here the same way, with the kit's exact
thresholds (``metrics.py``) in place of insightface's 0.01 grid on the
squared distance (one threshold step there is 0.005 in cosine).

The pickle is read with an unpickler that builds only lists, tuples, bytes,
bools and numpy arrays: a ``.bin`` cannot run code.

Example (a .bin of 40 bundled pairs, scored by the shipped int8 file):
    >>> import tempfile
    >>> from mfn_tf2.embedders import FeatureExtractor
    >>> from mfn_tf2.pairs import read_pairs
    >>> pairs = read_pairs("data/lfw_demo/pairs_heldout.txt", "data/lfw_demo/heldout")
    >>> images = [open(p, "rb").read() for k in range(0, 1200, 30) for p in (pairs.paths1[k], pairs.paths2[k])]
    >>> folder = tempfile.TemporaryDirectory()
    >>> with open(os.path.join(folder.name, "heldout.bin"), "wb") as f:
    ...     pickle.dump((images, pairs.labels[::30].astype(bool).tolist()), f)
    >>> heldout = read_bin(os.path.join(folder.name, "heldout.bin"))
    >>> heldout.name, heldout.issame.size, heldout.folds[:6].tolist()
    ('heldout', 40, [0, 0, 0, 0, 1, 1])
    >>> result = verify_bins([FeatureExtractor("android_demo_assets/model_int8.tflite")], [heldout])
    >>> print(bin_tables(result)[0].splitlines()[2])
    | set | pairs | accuracy (%) | accuracy-flip (%) | TAR@FAR=0.01 flip (%) | EER flip (%) |
    >>> folder.cleanup()
"""
from __future__ import annotations

import copy
import dataclasses
import io
import os
import pickle

import numpy as np
from PIL import Image

from mfn_tf2 import metrics
from mfn_tf2.config import set_name
from mfn_tf2.images import ImageError
from mfn_tf2.pairs import PairsError, contiguous_folds

# Classes a .bin may name: numpy arrays (some tools store the lists as arrays).
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar")}
# Images decoded and embedded at once (a decoded agedb_30 is 450 MB).
_CHUNK = 512


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


@dataclasses.dataclass
class BinSet:
    """One verification set: 2N encoded images and N same/different flags.

    Attributes:
        name: the file's stem (``agedb_30``), the name in tables and logs.
        path: the .bin file.
        images: 2N encoded images; pair i is images 2i and 2i+1.
        issame: (N,) int32, 1 = same person.
    """
    name: str
    path: str
    images: list
    issame: np.ndarray

    @property
    def folds(self) -> np.ndarray:
        """insightface's folds: 10 contiguous blocks of pairs."""
        return contiguous_folds(len(self.issame))


def read_bin(path: str) -> BinSet:
    """Loads one insightface .bin verification set.

    Raises:
        PairsError: "<file>: ..." for a missing file, a file that is not such a
            pickle, image and flag counts that do not match, or pairs of one kind only.
    """
    if not os.path.isfile(path):
        raise PairsError(f"{path}: verification set not found (check --verification_sets)")
    try:
        with open(path, "rb") as f:
            loaded = _SafeUnpickler(f, encoding="bytes").load()
        images, issame = loaded
        images, issame = [bytes(b) for b in images], np.asarray(issame).astype(bool).astype(np.int32)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise PairsError(f"{path}: not an insightface .bin verification set (a pickle of "
                         f"(images, issame)): {err}") from None
    if len(images) != 2 * issame.size or not issame.size:
        raise PairsError(f"{path}: {len(images)} images for {issame.size} pairs; a .bin holds "
                         "two images per pair")
    if issame.all() or not issame.any():
        raise PairsError(f"{path}: all {issame.size} pairs are {'same' if issame.all() else 'different'}"
                         "-person pairs; a verification set needs both kinds")
    return BinSet(set_name(path), path, images, issame)


def _decode(bin_set: BinSet, k: int) -> np.ndarray:
    """Image k of a set as uint8 RGB (PIL, as ``images.read_rgb`` decodes files)."""
    try:
        with Image.open(io.BytesIO(bin_set.images[k])) as img:
            return np.asarray(img.convert("RGB"), np.uint8)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{bin_set.path}: image {k} cannot be decoded ({err})") from None


def embed_set(fe, bin_set: BinSet) -> np.ndarray:
    """(2N, D) normalised embeddings of a set's images with one FeatureExtractor."""
    out = []
    for start in range(0, len(bin_set.images), _CHUNK):
        decoded = [_decode(bin_set, k) for k in range(start, min(start + _CHUNK, len(bin_set.images)))]
        same_size = len({im.shape for im in decoded}) == 1
        out += [fe.infer(np.stack(decoded))] if same_size else [fe.infer(im) for im in decoded]
    return np.concatenate(out)


def score_set(fe, bin_set: BinSet, far_targets=(1e-2,)) -> dict:
    """{"accuracy": report, "accuracy_flip": report} of one model on one set.

    Each report is ``metrics.verification_report`` on insightface's 10
    contiguous folds; the flip one embeds image + mirror, as insightface.
    """
    plain, flipped = copy.copy(fe), copy.copy(fe)
    plain.flip, flipped.flip = False, True
    reports = {}
    for key, extractor in (("accuracy", plain), ("accuracy_flip", flipped)):
        emb = embed_set(extractor, bin_set)
        scores = np.sum(emb[0::2] * emb[1::2], axis=1)
        reports[key] = metrics.verification_report(scores, bin_set.issame, bin_set.folds, far_targets)
    return reports


def verify_bins(extractors: list, bin_sets: list[BinSet], far_targets=(1e-2,)) -> dict:
    """Every model on every set.

    Returns:
        {"models": [{"name", "model", "sets": {set name: score_set(...) + "n_pairs"}}]}.
    """
    models = []
    for fe in extractors:
        sets = {s.name: dict(score_set(fe, s, far_targets), n_pairs=int(s.issame.size)) for s in bin_sets}
        models.append({"name": fe.name, "model": fe.describe(), "sets": sets})
    return {"models": models}


def bin_tables(result: dict) -> list[str]:
    """One Markdown table per model: a row per set, accuracy without and with flip."""
    tables = []
    for m in result["models"]:
        fars = list(next(iter(m["sets"].values()))["accuracy"]["tar_at_far"])
        head = (["set", "pairs", "accuracy (%)", "accuracy-flip (%)"]
                + [f"TAR@FAR={f} flip (%)" for f in fars] + ["EER flip (%)"])
        rows = [f"model: {m['name']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, s in m["sets"].items():
            plain, flip = s["accuracy"], s["accuracy_flip"]
            cells = ([name, str(s["n_pairs"]),
                      f"{100 * plain['accuracy']:.2f} +- {100 * plain['accuracy_std']:.2f}",
                      f"{100 * flip['accuracy']:.2f} +- {100 * flip['accuracy_std']:.2f}"]
                     + [f"{100 * flip['tar_at_far'][f]:.2f}" for f in fars] + [f"{100 * flip['eer']:.2f}"])
            rows.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(rows))
    return tables


__all__ = ["BinSet", "read_bin", "embed_set", "score_set", "verify_bins", "bin_tables"]
