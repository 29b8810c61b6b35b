"""Pairs files and the PairSet they hold: the LFW pairs.txt and a plain list format, read and written.

Two file formats are read, told apart by their first line:

* LFW (``pairs.txt``): a header ``folds n`` (``n`` alone for the View 1
  files such as ``pairsDevTrain.txt``: one fold), then per fold ``n`` matched
  lines ``name i j`` and ``n`` mismatched lines ``name1 i name2 j``; image ``i``
  of ``name`` is ``name/name_%04d.<ext>`` under the data directory.
* plain: lines ``path1 path2 label`` (label 1 = same person), paths relative
  to the data directory; tab-separated when paths hold spaces. Pairs are cut
  into 10 contiguous folds, as insightface's ``KFold(10, shuffle=False)``.

Every image is checked to exist while reading, so a typo fails in a second,
not after an hour of embedding. Errors are one line, ``<file>:<line>: ...``.
``save_pairs`` writes the plain format. Pairs generated from a face folder are
``pairs.generate_pairs``'s; import everything of pairs from ``mfn_tf2.pairs``.

Example:
    >>> ps = read_pairs("data/lfw_demo/pairs_heldout.txt", "data/lfw_demo/heldout")
    >>> len(ps), ps.n_folds, int(ps.labels.sum())
    (1200, 2, 600)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mfn_tf2.fileio import write_text
from mfn_tf2.images import IMAGE_EXTENSIONS, list_folder

# insightface and LFW both report 10-fold numbers.
DEFAULT_FOLDS = 10
_EXPECTED = "expected an LFW pairs.txt or 'path1 path2 label' lines"


class PairsError(ValueError):
    """A pairs file or data folder that cannot be used; names file and line."""


@dataclass
class PairSet:
    """N face pairs with their labels and cross-validation folds.

    Args:
        paths1, paths2: N image paths each (joined with the data directory).
        labels: (N,) int32, 1 = same person.
        folds: (N,) int32 fold index of each pair.
        skipped: pairs left out because an image was missing.
        source: where the pairs came from (file name or generator settings).

    Example:
        >>> ps = PairSet(["a.jpg", "a.jpg"], ["b.jpg", "c.jpg"], [1, 0], [0, 1])
        >>> ps.unique_paths(), [i.tolist() for i in ps.pair_indices()]
        (['a.jpg', 'b.jpg', 'c.jpg'], [[0, 0], [1, 2]])
    """
    paths1: list[str]
    paths2: list[str]
    labels: np.ndarray
    folds: np.ndarray
    skipped: int = 0
    source: str = ""

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int32).reshape(-1)
        self.folds = np.asarray(self.folds, dtype=np.int32).reshape(-1)
        sizes = {len(self.paths1), len(self.paths2), self.labels.size, self.folds.size}
        if len(sizes) != 1:
            raise PairsError(f"{self.source}: paths1, paths2, labels and folds differ in length")

    def __len__(self) -> int:
        return len(self.paths1)

    @property
    def n_folds(self) -> int:
        """How many distinct folds the pairs fall into."""
        return int(np.unique(self.folds).size)

    def unique_paths(self) -> list[str]:
        """Every image once, sorted: embed these, then index with pair_indices()."""
        return sorted(set(self.paths1) | set(self.paths2))

    def pair_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) int64 positions of each pair's two images in unique_paths()."""
        position = {path: k for k, path in enumerate(self.unique_paths())}
        return (np.array([position[p] for p in self.paths1], dtype=np.int64),
                np.array([position[p] for p in self.paths2], dtype=np.int64))


def contiguous_folds(n: int, n_folds: int = DEFAULT_FOLDS) -> np.ndarray:
    """(n,) int32 fold ids of contiguous blocks, sizes as sklearn's KFold.

    The first ``n % n_folds`` folds get one pair more; fewer than ``n_folds``
    pairs get one fold each.

    Example:
        >>> contiguous_folds(7, 3).tolist()
        [0, 0, 0, 1, 1, 2, 2]
    """
    k = max(1, min(n_folds, n))
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k, dtype=np.int32), sizes)


def data_roots(data_directory) -> list[str]:
    """One or several data directories, checked to exist (a name resolves under the first hit).

    Args:
        data_directory: a folder, or a list of folders.

    Returns:
        The folders as strings, in order.

    Raises:
        PairsError: a folder that does not exist.

    Example:
        >>> data_roots(["data/lfw_demo/train", "data/lfw_demo/heldout"])
        ['data/lfw_demo/train', 'data/lfw_demo/heldout']
    """
    roots = ([data_directory] if isinstance(data_directory, (str, os.PathLike))
             else list(data_directory))
    for root in roots:
        if not os.path.isdir(root):
            raise PairsError(f"{root}: data directory not found (check data_directory)")
    return [os.fspath(root) for root in roots]


class _ImageFinder:
    """Resolves pair entries to files, listing each person's folder once (``images.list_folder``)."""

    def __init__(self, roots: list[str]):
        self.roots = roots
        self._folders = {}  # name -> (folder, {lower-case file name: file name}) or None

    def lfw_image(self, name: str, index: int) -> tuple[str | None, str]:
        """(path, "") of image ``index`` of ``name``, or (None, why it is missing)."""
        if name not in self._folders:
            folder = next((os.path.join(r, name) for r in self.roots
                           if os.path.isdir(os.path.join(r, name))), None)
            listing = ({os.path.basename(f).lower(): os.path.basename(f) for f in list_folder(folder)[0]}
                       if folder else None)
            self._folders[name] = (folder, listing) if folder else None
        if not self._folders[name]:
            return None, f"unknown name {name!r}: no folder {name}/ in {', '.join(self.roots)}"
        folder, files = self._folders[name]
        for ext in IMAGE_EXTENSIONS:
            file = files.get(f"{name}_{index:04d}{ext}".lower())
            if file:
                return os.path.join(folder, file), ""
        count = sum(f.endswith(IMAGE_EXTENSIONS) for f in files)
        if index > count:
            return None, f"{name} has {count} images, index {index} is past them"
        return None, f"missing file {name}/{name}_{index:04d}.jpg (or another image extension)"

    def file(self, relative: str) -> tuple[str | None, str]:
        """(path, "") of a path relative to a root, or (None, why it is missing)."""
        for root in self.roots:
            path = os.path.normpath(os.path.join(root, relative))
            if os.path.isfile(path):
                return path, ""
        return None, f"missing file {relative} in {', '.join(self.roots)}"


def _fields(line: str) -> list[str]:
    """Splits on tabs when there are any (paths may hold spaces), else on spaces."""
    parts = line.split("\t") if "\t" in line else line.split()
    return [p.strip() for p in parts if p.strip()]


def _read_lines(filename) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank line; CRLF and a BOM are fine."""
    try:
        with open(filename, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise PairsError(f"{filename}: pairs file not found (check pairs_filename)") from None
    except UnicodeDecodeError:
        raise PairsError(f"{filename}: not a text file ({_EXPECTED})") from None
    lines = [(no, _fields(line)) for no, line in enumerate(text.splitlines(), 1)]
    lines = [(no, fields) for no, fields in lines if fields]
    if not lines:
        raise PairsError(f"{filename}:1: empty pairs file ({_EXPECTED})")
    return lines


def _index(filename, no: int, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise PairsError(f"{filename}:{no}: image index {text!r} is not an integer >= 1")
    return int(text)


def _parse_lfw(filename, lines, finder):
    """Pairs of an LFW file; lines[0] is its header."""
    header_no, header = lines[0]
    n_folds, n = (1, int(header[0])) if len(header) == 1 else map(int, header)
    per_fold = 2 * n
    entries = []  # (line number, name1, i, name2, j, label)
    for no, f in lines[1:]:
        if len(f) not in (3, 4):
            raise PairsError(f"{filename}:{no}: expected 'name i j' or 'name1 i name2 j', "
                             f"got {len(f)} fields")
        first, second = (f[0], f[0]) if len(f) == 3 else (f[0], f[2])
        entries.append((no, first, _index(filename, no, f[1]), second,
                        _index(filename, no, f[-1]), int(len(f) == 3)))
    if len(entries) != n_folds * per_fold:
        raise PairsError(f"{filename}:{header_no}: header '{' '.join(header)}' announces "
                         f"{n_folds} folds x {per_fold} pairs = {n_folds * per_fold}, the file "
                         f"has {len(entries)}")
    for fold in range(n_folds):
        chunk = entries[fold * per_fold:(fold + 1) * per_fold]
        matched = sum(e[-1] for e in chunk)
        if matched != n:
            raise PairsError(f"{filename}:{chunk[0][0]}: fold {fold + 1} (lines {chunk[0][0]}-"
                             f"{chunk[-1][0]}) has {matched} matched and {per_fold - matched} "
                             f"mismatched pairs; the header needs {n} of each")
    for position, (no, name1, i, name2, j, label) in enumerate(entries):
        image1, image2 = finder.lfw_image(name1, i), finder.lfw_image(name2, j)
        yield no, image1, image2, label, position // per_fold


def _parse_plain(filename, lines, finder):
    """Pairs of a 'path1 path2 label' file (fold ids are set by the caller)."""
    for no, f in lines:
        if len(f) != 3:
            raise PairsError(f"{filename}:{no}: expected 'path1 path2 label', got {len(f)} fields")
        if f[2] not in ("0", "1"):
            hint = (" (an LFW pairs.txt must start with its 'folds n' header line)"
                    if f[1].isdigit() else "")
            raise PairsError(f"{filename}:{no}: label must be 0 or 1, got {f[2]!r}{hint}")
    # Every line is checked before any file is looked up, as for LFW files.
    for no, (path1, path2, label) in lines:
        yield no, finder.file(path1), finder.file(path2), int(label), None


def _format_of(filename, lines):
    """_parse_lfw or _parse_plain, from the first line."""
    no, first = lines[0]
    if len(first) in (1, 2):
        if all(t.isascii() and t.isdigit() and int(t) > 0 for t in first):
            return _parse_lfw
        raise PairsError(f"{filename}:{no}: expected an LFW header 'folds n' (e.g. '10 300') "
                         f"or a 'path1 path2 label' line, got {' '.join(first)!r}")
    if len(first) == 4:
        raise PairsError(f"{filename}:{no}: missing header: an LFW pairs.txt starts with "
                         "'folds n' (e.g. '10 300')")
    return _parse_plain


def read_pairs(pairs_filename, data_directory, skip_missing: bool = False) -> PairSet:
    """Reads an LFW pairs.txt or a plain pairs file and finds every image.

    Args:
        pairs_filename: the file (format detected from its first line).
        data_directory: folder the names/paths resolve under, or a list of
            folders searched in order (the full LFW: [train, heldout]).
        skip_missing: skip and count pairs with a missing image (unknown
            name, index past the person's images, missing file) instead of
            failing.

    Returns:
        A PairSet; folds from the file (LFW) or 10 contiguous folds (plain).

    Raises:
        PairsError: "<file>:<line>: <what is wrong>" for a bad header, a line
            with the wrong number of fields, a bad index or label, a missing
            image, an empty file, fold counts that do not match the header.
    """
    roots = data_roots(data_directory)
    lines = _read_lines(pairs_filename)
    parse = _format_of(pairs_filename, lines)
    kept, skipped = [], 0
    finder = _ImageFinder(roots)
    for no, (path1, why1), (path2, why2), label, fold in parse(pairs_filename, lines, finder):
        if path1 and path2:
            kept.append((path1, path2, label, fold))
        elif skip_missing:
            skipped += 1
        else:
            raise PairsError(f"{pairs_filename}:{no}: {why1 or why2} "
                             "(fix data_directory, or set skip_missing to skip such pairs)")
    if not kept:
        raise PairsError(f"{pairs_filename}: all {skipped} pairs skipped, no image found "
                         f"under {', '.join(roots)} (check data_directory)")
    paths1, paths2, labels, folds = map(list, zip(*kept))
    if parse is _parse_plain:
        folds = contiguous_folds(len(kept))
    return PairSet(paths1, paths2, labels, folds, skipped, os.fspath(pairs_filename))


def save_pairs(pairset: PairSet, path, data_directory) -> None:
    """Writes the plain format: tab-separated, one pair a line.

    Reading it back with ``read_pairs(path, data_directory)`` gives the same
    pairs; folds become 10 contiguous folds (as generated pairs already are).
    The file is replaced atomically.

    Args:
        pairset: the pairs to write.
        path: the file to write.
        data_directory: the paths are written relative to it (to its first
            folder when it is a list).

    Example:
        >>> import tempfile
        >>> ps = read_pairs("data/lfw_demo/pairs_heldout.txt", "data/lfw_demo/heldout")
        >>> path = os.path.join(tempfile.mkdtemp(), "plain.txt")
        >>> save_pairs(ps, path, "data/lfw_demo/heldout")
        >>> read_pairs(path, "data/lfw_demo/heldout").paths2 == ps.paths2
        True
    """
    root = data_roots(data_directory)[0]
    rel = os.path.relpath
    write_text(path, "".join(f"{rel(a, root)}\t{rel(b, root)}\t{y}\n"
                             for a, b, y in zip(pairset.paths1, pairset.paths2,
                                                pairset.labels.tolist())))


__all__ = ["PairsError", "PairSet", "DEFAULT_FOLDS", "contiguous_folds", "data_roots", "read_pairs", "save_pairs"]
