"""Face folders: one sub-folder per identity, checked and probed before any training work.

``scan_folder`` is the kit's one reading of an identity-folder tree: training,
packing, calibration and generated pairs all see the identities and images it
gives. It lists with ``images.list_folder`` (hidden entries left out), checks
the layout (the folder exists and holds one sub-folder per identity) and
probes every file by its content in a thread pool: PIL reads
only the header, plus the last bytes of JPEG/PNG files to catch truncation;
other formats are decoded whole. Broken and non-image files are left out and
listed with the reason. Each kept image carries a flag, ``python_path``: True
when ``tf.io.decode_image`` would read it wrong (palette/1-bit BMP, PGM/PPM,
TIFF, WebP, GIF), so the pipeline decodes it with ``images.read_rgb`` instead.

The rest turns the scan into labelled examples (path, python_path, label):
``select_identities`` applies ``min_images`` / ``max_identities`` (label i is
the i-th kept name), ``split_examples`` holds out a stratified validation
share, ``valid_examples`` labels a separate validation folder by name.
``DataError`` is the one error of unusable training data, also raised by
``shards`` and ``recordio``.

Example:
    >>> identities, skipped = scan_folder("data/lfw_demo/train")
    >>> names = select_identities(identities, DataConfig(train_directory="data/lfw_demo/train"))
    >>> path, python_path, label = labelled_examples(identities, names)[0]
    >>> label, python_path, path.endswith(".jpg")
    (0, False, True)
"""
from __future__ import annotations

import concurrent.futures
import os
import warnings

import numpy as np
from PIL import Image

from mfn_tf2.config import DataConfig
from mfn_tf2.images import IMAGE_ENDS, IMAGE_EXTENSIONS, ImageError, image_format, list_folder, read_rgb

# Format -> PIL modes that tf.io.decode_image decodes right; other modes of these
# formats (it reads palette BMPs wrong, 1-bit ones not at all) and every other format
# (PGM/PPM, TIFF, WebP, GIF, OpenCV's) take the python path, ``images.read_rgb``.
_TF_MODES = {"JPEG": {"L", "RGB", "CMYK"}, "PNG": None, "BMP": {"RGB", "RGBA"}}
# The PIL check run on a JPEG / PNG that does not end with its IMAGE_ENDS bytes
# (a truncated file fails it; one with trailing junk passes).
_TAIL_CHECKS = {"JPEG": "load", "PNG": "verify"}


class DataError(ValueError):
    """Training data that cannot be used; the message names the folder or file
    and says what to do."""


def _probe(path: str) -> tuple[bool | None, str]:
    """(python_path, "") for a usable image, (None, reason) for a broken one or another file."""
    kind, why = image_format(path)
    if kind is None:
        return None, why
    if kind not in _TF_MODES:  # read by read_rgb in training: decoded whole now
        try:
            read_rgb(path)
        except ImageError as err:
            return None, "broken image " + str(err).removeprefix(f"{path}: cannot read image ")
        return True, ""
    try:
        with Image.open(path) as img:
            tail, check = IMAGE_ENDS.get(img.format, b""), _TAIL_CHECKS.get(img.format)
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - len(tail)))
                if f.read() != tail:
                    getattr(img, check)()
            modes = _TF_MODES[img.format]
            return modes is not None and img.mode not in modes, ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return None, f"broken image ({err})"


def _listing(folder: str, flag: str = "") -> tuple[list[str], list[str]]:
    """``images.list_folder`` (files, sub-folders); unreadable is a DataError."""
    try:
        return list_folder(folder)
    except PermissionError:
        raise DataError(f"{flag}{folder}: permission denied; make the folder readable") from None


def _list_folder(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(file paths, skipped sub-folders) of one identity folder, sorted; the
    files are images or not by their content: see _probe."""
    found, sub_folders = _listing(folder)
    return found, [(path, "a folder inside an identity folder") for path in sub_folders]


def _identity_folders(root: str, flag: str, min_identities: int) -> list[str]:
    """The identity sub-folders of ``root``, after every check of its layout."""
    layout = "give a folder with one sub-folder per identity"
    if not os.path.exists(root):
        raise DataError(f"{flag} {root}: no such folder; {layout}")
    if not os.path.isdir(root):
        raise DataError(f"{flag} {root}: not a folder; {layout}")
    files, folders = _listing(root, f"{flag} ")
    if not files and not folders:
        raise DataError(f"{flag} {root}: the folder is empty; {layout}")
    loose = [os.path.basename(path) for path in files]
    if any(name.lower().endswith(IMAGE_EXTENSIONS) for name in loose) or not folders:
        raise DataError(f"{flag} {root}: has files at its top level ({', '.join(loose[:3])}) "
                        f"instead of identity folders; {layout} (or finish "
                        "`python -m mfn_tf2.data pack` into it)")
    if len(folders) < min_identities:
        raise DataError(f"{flag} {root}: {len(folders)} identity folder(s), need at least "
                        f"{min_identities}")
    return folders


def _map_chunks(pool, function, items: list, size: int = 256) -> list:
    """[function(x) for x in items] on a thread pool, one task per ``size`` items
    (a million single-item tasks would cost more than the work)."""
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    return [y for ys in pool.map(lambda chunk: [function(x) for x in chunk], chunks) for y in ys]


def scan_folder(root: str, flag: str = "--train_directory", min_identities: int = 2):
    """Lists and probes every image of an identity-folder tree (thread pool).

    Args:
        root: one sub-folder per identity.
        flag: the option named in error messages.
        min_identities: fewer identity folders is an error.

    Returns:
        ({identity: [(path, python_path), ...]}, [(path, reason) skipped]).

    Raises:
        DataError: missing, empty, unreadable or wrongly laid out folder.

    Example:
        >>> identities, skipped = scan_folder("data/lfw_demo/train")
        >>> len(identities) > 1, skipped
        (True, [])
    """
    folders = _identity_folders(root, flag, min_identities)
    with concurrent.futures.ThreadPoolExecutor(min(32, 4 * (os.cpu_count() or 1))) as pool:
        listed = _map_chunks(pool, _list_folder, folders)
        paths = [p for found, _ in listed for p in found]
        with warnings.catch_warnings():  # huge-but-valid images warn in PIL
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probes = dict(zip(paths, _map_chunks(pool, _probe, paths)))
    skipped = [s for _, skips in listed for s in skips]
    skipped += [(p, reason) for p, (_, reason) in probes.items() if reason]
    identities = {os.path.basename(folder): [(p, probes[p][0]) for p in found if not probes[p][1]]
                  for folder, (found, _) in zip(folders, listed)}
    return identities, skipped


def select_identities(identities: dict, cfg: DataConfig) -> list[str]:
    """Names kept by ``cfg.min_images`` / ``max_identities``, sorted: label i is name i.

    ``max_identities`` keeps the identities with most images (ties by name).

    Args:
        identities: {name: [image, ...]} as ``scan_folder`` gives it.
        cfg: its ``min_images``, ``max_identities`` and ``train_directory`` (named in errors).

    Returns:
        The kept names, sorted.

    Raises:
        DataError: fewer than 2 identities kept.

    Example:
        >>> select_identities({"b": [1, 2], "a": [1, 2], "c": [1]},
        ...                   DataConfig(train_directory="faces", min_images=2))
        ['a', 'b']
    """
    least = cfg.min_images
    kept = sorted((-len(files), name) for name, files in identities.items() if len(files) >= least)
    kept = kept[:cfg.max_identities] if cfg.max_identities > 0 else kept
    if len(kept) < 2:
        raise DataError(f"--train_directory {cfg.train_directory}: only {len(kept)} identities "
                        f"have at least {least} readable images; lower --min_images or add images")
    return sorted(name for _, name in kept)


def labelled_examples(identities: dict, names: list[str]) -> list[tuple[str, bool, int]]:
    """(path, python_path, label) of every image of the kept identities (label i: names[i]).

    Args:
        identities: {name: [(path, python_path), ...]} as ``scan_folder`` gives it.
        names: the kept names, as ``select_identities`` gives them.

    Returns:
        [(path, python_path, label)], identity by identity.

    Example:
        >>> labelled_examples({"a": [("a1", False)], "b": [("b1", True)]}, ["b", "a"])
        [('b1', True, 0), ('a1', False, 1)]
    """
    return [(*image, label) for label, name in enumerate(names) for image in identities[name]]


def split_examples(files_by_label: list, ratio: float, seed: int):
    """Stratified split: about ``ratio`` of each identity goes to validation.

    The per-identity share is rounded at random (seeded) so that small
    identities add up to ``ratio`` overall; every identity keeps at least one
    training image, so identities with one image stay in training.

    Args:
        files_by_label: label i -> [(path, python_path), ...].
        ratio: validation share, in [0, 1).
        seed: seeds the rounding and the choice of images.

    Returns:
        (train, valid) lists of (path, python_path, label).

    Example:
        >>> train, valid = split_examples([[("a1", False), ("a2", False)], [("b1", False)]], 0.5, 0)
        >>> len(train) + len(valid), ("b1", False, 1) in train
        (3, True)
    """
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for label, files in enumerate(files_by_label):
        n_valid = min(len(files) - 1, int(ratio * len(files) + rng.random()))
        order = rng.permutation(len(files))
        valid += [(*files[i], label) for i in order[:n_valid]]
        train += [(*files[i], label) for i in sorted(order[n_valid:])]
    return train, valid


def valid_examples(cfg: DataConfig, class_names: list[str]):
    """Validation examples of ``cfg.valid_directory``, labelled by training folder name.

    Identity folders the training set lacks are left out (listed in skipped).

    Args:
        cfg: its ``valid_directory``, one sub-folder per identity.
        class_names: the training labels' names (label i: class_names[i]).

    Returns:
        ([(path, python_path, label)], [(path, reason) skipped]).

    Raises:
        DataError: a bad folder, or none of its identities is in ``class_names``.

    Example:
        >>> cfg = DataConfig(train_directory="data/lfw_demo/train", valid_directory="data/lfw_demo/train")
        >>> examples, skipped = valid_examples(cfg, ["Alejandro_Toledo"])
        >>> {label for _, _, label in examples}, len(skipped) > 0
        ({0}, True)
    """
    identities, skipped = scan_folder(cfg.valid_directory, "--valid_directory", 1)
    trained = set(class_names)
    skipped += [(os.path.join(cfg.valid_directory, n), "identity not in the training set")
                for n in identities if n not in trained]
    known = {n: identities.get(n, []) for n in class_names}
    examples = labelled_examples(known, class_names)
    if not examples:
        raise DataError(f"--valid_directory {cfg.valid_directory}: none of its identity "
                        "folders is in the training set")
    return examples, skipped


__all__ = ["DataError", "scan_folder", "select_identities", "labelled_examples", "split_examples",
           "valid_examples"]
