"""Face pairs to verify: generated from a folder of identity folders, and every pairs name of the kit.

``generate_pairs`` samples same / different pairs from the identities and
images that ``folders.scan_folder`` finds, the very ones training reads from
the same folder; ``generate_pairs_file`` saves them for later runs. Pairs
files (the LFW pairs.txt, the plain format) are read and written by
``pairfiles``, whose names are importable from here too: ``from mfn_tf2.pairs
import PairSet, read_pairs`` is the one import of pairs for the rest of the kit.

Example:
    >>> ps = generate_pairs("data/lfw_demo/train", sample_type=1, num_person=2, num_sample=3)
    >>> len(ps), int(ps.labels.sum())
    (10, 4)
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.folders import DataError, scan_folder
from mfn_tf2.images import warn_skipped
from mfn_tf2.pairfiles import PairSet, PairsError, contiguous_folds, data_roots, read_pairs, save_pairs


def _identities(data_directory) -> dict[str, list[str]]:
    """{person folder: sorted image paths}, people with no image left out.

    The folder is read by ``folders.scan_folder``, as training reads it: the
    same hidden-entry rule, the same images by content (any format, broken
    ones left out); the other files are counted in one warning.
    """
    root = data_roots(data_directory)[0]
    try:
        identities, skipped = scan_folder(root, "data_directory", min_identities=1)
    except DataError as err:
        raise PairsError(str(err)) from None
    warn_skipped(skipped)
    return {name: [path for path, _ in images] for name, images in identities.items() if images}


def _balanced_pairs(people, rng, repeat_times):
    """Per round, per person with 2+ images: one same and one different pair."""
    names = list(people)
    multi = [k for k, name in enumerate(names) if len(people[name]) >= 2]
    if len(names) < 2:
        return []
    triples = []
    for _ in range(repeat_times):
        for k in multi:
            own = people[names[k]]
            a, b = rng.choice(len(own), size=2, replace=False)
            triples.append((own[a], own[b], 1))
            # A uniform draw among the other people: shift by 1..len-1.
            other = people[names[(k + rng.integers(1, len(names))) % len(names)]]
            triples.append((own[rng.integers(len(own))], other[rng.integers(len(other))], 0))
    return triples


def _all_pairs(people, rng, num_person, num_sample):
    """Every pair among num_person people x up to num_sample images each."""
    eligible = [name for name, images in people.items() if len(images) >= 2]
    if len(eligible) < 2:
        return []
    chosen = []  # (person, image path)
    for k in rng.choice(len(eligible), size=min(num_person, len(eligible)), replace=False):
        images = people[eligible[k]]
        picks = rng.choice(len(images), size=min(num_sample, len(images)), replace=False)
        chosen += [(eligible[k], images[p]) for p in sorted(picks)]
    return [(pa, pb, int(a == b)) for i, (a, pa) in enumerate(chosen)
            for b, pb in chosen[i + 1:]]


def generate_pairs(data_directory, sample_type: int = 0, repeat_times: int = 10,
                   num_person: int = 10, num_sample: int = 20, seed: int = 0) -> PairSet:
    """Samples verification pairs from a folder of identity folders.

    Args:
        data_directory: one sub-folder of images per person.
        sample_type: 0 = balanced: ``repeat_times`` rounds, each giving every
            person with 2+ images one same pair and one pair with another
            random person; 1 = every pair among ``num_person`` people (with
            2+ images) x up to ``num_sample`` images each.
        repeat_times, num_person, num_sample: see sample_type (all >= 1).
        seed: the same seed gives the same pairs.

    The values come from an ``EvalConfig``, which checks them.

    Returns:
        A PairSet in 10 contiguous folds.

    Raises:
        PairsError: a missing folder, one not laid out as identity folders
            (the message of ``folders.scan_folder``), or too few people.

    Example:
        >>> ps = generate_pairs("data/lfw_demo/train", repeat_times=2)
        >>> int(ps.labels.sum()) * 2 == len(ps)
        True
    """
    people = _identities(data_directory)
    rng = np.random.default_rng(seed)
    samplers = {0: lambda: _balanced_pairs(people, rng, repeat_times),
                1: lambda: _all_pairs(people, rng, num_person, num_sample)}
    triples = samplers[sample_type]()
    if not triples:
        multi = sum(len(images) >= 2 for images in people.values())
        raise PairsError(f"{data_directory}: too few people to generate pairs ({len(people)} "
                         f"identity folders, {multi} with 2+ images): sample_type 0 needs 2+ "
                         "folders, one with 2+ images; sample_type 1 two with 2+ images")
    paths1, paths2, labels = map(list, zip(*triples))
    source = f"generated(sample_type={sample_type}, seed={seed}) from {data_directory}"
    return PairSet(paths1, paths2, labels, contiguous_folds(len(labels)), 0, source)


def generate_pairs_file(pairs_filename, data_directory, **sampling) -> str:
    """Generates pairs from ``data_directory`` and saves them as ``pairs_filename``.

    What ``python -m mfn_tf2.train`` does when its pairs file does not exist, as
    the original Keras train script did: the pairs are then read from that file
    by this run's checks and by every later run given the same name.

    Args:
        pairs_filename: the file to write (plain format, tab-separated); its folder is made.
        data_directory: one sub-folder of images per person.
        sampling: ``generate_pairs``' sample_type, repeat_times, num_person, num_sample, seed.

    Returns:
        The line that says what was written.

    Raises:
        PairsError: no data directory, or too few people in it.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "pairs.txt")
        >>> line = generate_pairs_file(path, "data/lfw_demo/train", repeat_times=1)
        >>> len(read_pairs(path, "data/lfw_demo/train")) == len(generate_pairs("data/lfw_demo/train", repeat_times=1))
        True
    """
    if not data_directory:
        raise PairsError(f"{pairs_filename}: pairs file not found, and no data_directory to generate "
                         "pairs from (give one, or an existing pairs file)")
    pairset = generate_pairs(data_directory, **sampling)
    save_pairs(pairset, pairs_filename, data_directory)
    return (f"{pairs_filename} did not exist: {len(pairset)} pairs generated from {data_directory} "
            f"(sample_type {sampling.get('sample_type', 0)}) and saved there; later runs read them")


# PairSet, PairsError, contiguous_folds, read_pairs and save_pairs are pairfiles', imported from here by the kit.
__all__ = ["PairsError", "PairSet", "contiguous_folds", "read_pairs", "generate_pairs", "save_pairs",
           "generate_pairs_file"]
