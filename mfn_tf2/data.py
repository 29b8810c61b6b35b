"""The training input pipeline: face folders (or packed shards) to batches.

``open_training_data(cfg)`` does every check up front, before any training
work: the folder exists and holds one sub-folder per identity, every file is
probed by its content (PIL reads only the header, plus the last bytes of
JPEG/PNG files to catch truncation; other formats are decoded) in a thread
pool, and broken or non-image files are left out with one warning. The
returned ``TrainingData`` then builds tf.data pipelines:

    paths --shard--> shuffle --decode, resize--> (cache) --augment--> batch --> prefetch

Files ``tf.io.decode_image`` reads right (JPEG incl. grayscale and CMYK, every
PNG incl. 16-bit and palette, 24/32-bit BMP) decode in TensorFlow in parallel;
the rest (palette/1-bit BMP, PGM/PPM, TIFF, WebP, GIF) go through ``images.read_rgb``. Images are
resized to ``image_size`` without keeping the aspect ratio (face crops are
square) and normalised to (x - 127.5) / 128. Randomness (shuffle order and
augmentation) comes from ``cfg.seed`` and changes every epoch, the same way on
every run. A file that still fails to decode (the probe makes this rare) is
dropped by tf.data's ``ignore_errors`` instead of stopping training.

A directory holding ``manifest.json`` is read as shards (see ``shards.py``),
one holding ``train.rec`` as an insightface RecordIO set (``recordio.py``);
shards have no validation split unless ``valid_directory`` is given. The packer is
a CLI of this module:

    python -m mfn_tf2.data pack faces/ packed/ --shards 64

Example:
    >>> data = open_training_data(DataConfig(train_directory="data/lfw_demo/train",
    ...                                       batch_size=32))        # doctest: +SKIP
    >>> images, labels = next(iter(data.train_dataset()))           # doctest: +SKIP
    >>> images.shape, labels.dtype                                  # doctest: +SKIP
    (TensorShape([32, 112, 112, 3]), tf.int32)
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib
import os
import warnings
from typing import Callable

import numpy as np
from PIL import Image

from mfn_tf2 import cli, recordio, shards
from mfn_tf2.backend import tf
from mfn_tf2.config import PIXEL_MEAN, PIXEL_STD, DataConfig
from mfn_tf2.images import IMAGE_EXTENSIONS, ImageError, image_format, read_rgb, warn_skipped
from mfn_tf2.shards import DataError

# Format -> PIL modes that tf.io.decode_image decodes right; other modes of these
# formats (it reads palette BMPs wrong, 1-bit ones not at all) and every other format
# (PGM/PPM, TIFF, WebP, GIF, OpenCV's) take the python path, ``images.read_rgb``.
_TF_MODES = {"JPEG": {"L", "RGB", "CMYK"}, "PNG": None, "BMP": {"RGB", "RGBA"}}
# The bytes a complete file ends with, and the PIL check run on a file that
# does not (a truncated file fails it; one with trailing junk passes).
_TAILS = {"JPEG": (b"\xff\xd9", "load"), "PNG": (b"IEND\xaeB`\x82", "verify")}
# Records held by the shuffle of a shard pipeline (shards are packed in random order).
_SHARD_SHUFFLE = 10_000
# Augmentation strength: brightness in pixel units, contrast factor, crop side share.
_BRIGHTNESS, _CONTRAST, _MIN_CROP = 32.0, (0.8, 1.2), 0.85


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
            tail, check = _TAILS.get(img.format, (b"", None))
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - len(tail)))
                if f.read() != tail:
                    getattr(img, check)()
            modes = _TF_MODES[img.format]
            return modes is not None and img.mode not in modes, ""
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return None, f"broken image ({err})"


def _entries(folder: str, flag: str = "") -> list:
    """The visible entries of ``folder`` by name; unreadable is a DataError."""
    try:
        return sorted((e for e in os.scandir(folder) if not e.name.startswith(".")),
                      key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"{flag}{folder}: permission denied; make the folder readable") from None


def _list_folder(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(image paths, skipped) of one identity folder, sorted."""
    found, skipped = [], []
    for e in _entries(folder):
        if e.is_file():  # an image or not by its content: see _probe
            found.append(e.path)
        else:
            skipped.append((e.path, "a folder inside an identity folder"))
    return found, skipped


def _identity_folders(root: str, flag: str, min_identities: int) -> list[str]:
    """The identity sub-folders of ``root``, after every check of its layout."""
    layout = "give a folder with one sub-folder per identity"
    if not os.path.exists(root):
        raise DataError(f"{flag} {root}: no such folder; {layout}")
    if not os.path.isdir(root):
        raise DataError(f"{flag} {root}: not a folder; {layout}")
    entries = _entries(root, f"{flag} ")
    if not entries:
        raise DataError(f"{flag} {root}: the folder is empty; {layout}")
    folders = [e.path for e in entries if e.is_dir()]
    loose = [e.name for e in entries if e.is_file()]
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
    """
    least = cfg.min_images
    kept = sorted((-len(files), name) for name, files in identities.items() if len(files) >= least)
    kept = kept[:cfg.max_identities] if cfg.max_identities > 0 else kept
    if len(kept) < 2:
        raise DataError(f"--train_directory {cfg.train_directory}: only {len(kept)} identities "
                        f"have at least {least} readable images; lower --min_images or add images")
    return sorted(name for _, name in kept)


def _labelled(identities: dict, names: list[str]) -> list[tuple[str, bool, int]]:
    """(path, python_path, label) of every image of the kept identities."""
    return [(*image, label) for label, name in enumerate(names) for image in identities[name]]


def _split(files_by_label: list, ratio: float, seed: int):
    """Stratified split: about ``ratio`` of each identity goes to validation.

    The per-identity share is rounded at random (seeded) so that small
    identities add up to ``ratio`` overall; every identity keeps at least one
    training image, so identities with one image stay in training.
    """
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for label, files in enumerate(files_by_label):
        n_valid = min(len(files) - 1, int(ratio * len(files) + rng.random()))
        order = rng.permutation(len(files))
        valid += [(*files[i], label) for i in order[:n_valid]]
        train += [(*files[i], label) for i in sorted(order[n_valid:])]
    return train, valid


def _resize(image, size: int):
    """uint8 (H, W, 3) -> uint8 (size, size, 3); antialiased so huge images do not alias."""
    image = tf.image.resize(image, [size, size], antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _decode_file(path, label, python_path, size: int):
    """A file path -> (uint8 (size, size, 3), label); see ``_probe`` for the two paths."""
    def python_read():
        image = tf.numpy_function(lambda p: read_rgb(p.decode()), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    image = tf.cond(python_path, python_read, lambda: tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False))
    return _resize(image, size), label


def _decode_bytes(data, label, size: int):
    """Encoded bytes of a shard record -> (uint8 (size, size, 3), label)."""
    return _resize(tf.io.decode_image(data, channels=3, expand_animations=False), size), label


def _decoded(records, decode, cfg: DataConfig, shuffle: bool, buffer: int):
    """Shuffles (cheap records first, unless cached), decodes, drops failures, caches."""
    if shuffle and not cfg.cache:
        records = records.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    if cfg.cache:
        ds = ds.cache()
        ds = ds.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True) if shuffle else ds
    return ds


def _augment(image, seed, aug_freq: float, size: int):
    """float32 (S, S, 3) in 0..255, augmented with probability ``aug_freq``."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    image = tf.cast(image, tf.float32)

    def jitter():
        out = tf.image.stateless_random_flip_left_right(image, seeds[1])
        out = tf.image.stateless_random_brightness(out, _BRIGHTNESS, seeds[2])
        out = tf.image.stateless_random_contrast(out, *_CONTRAST, seeds[3])
        side = tf.random.stateless_uniform([], seeds[4], _MIN_CROP, 1.0)
        top_left = tf.random.stateless_uniform([2], seeds[5], 0.0, 1.0) * (1.0 - side)
        box = tf.concat([top_left, top_left + side], 0)[None]  # (1, 4) y0 x0 y1 x1
        out = tf.image.crop_and_resize(out[None], box, [0], [size, size])[0]
        return tf.clip_by_value(out, 0.0, 255.0)

    augment = tf.random.stateless_uniform([], seeds[0]) < aug_freq
    return tf.cond(augment, jitter, lambda: image)


def _normalise(image):
    return (tf.cast(image, tf.float32) - PIXEL_MEAN) / PIXEL_STD


def _per_replica(batch_size: int, input_context) -> int:
    return input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size


def _pipeline_id(input_context) -> tuple[int, int]:
    return ((input_context.num_input_pipelines, input_context.input_pipeline_id)
            if input_context else (1, 0))


@dataclasses.dataclass(eq=False)
class TrainingData:
    """The opened training set; builds the tf.data pipelines the trainer fits on.

    Attributes:
        num_classes: identities (labels 0 .. num_classes - 1).
        class_names: label i -> identity folder name.
        num_train: training examples in one epoch (all workers together).
        num_valid: validation examples (0 when there is no validation set).
        skipped: (path, reason) of every file left out.

    Example:
        >>> data = open_training_data(cfg)                          # doctest: +SKIP
        >>> model.fit(data.train_dataset(), epochs=3,
        ...           validation_data=data.valid_dataset())        # doctest: +SKIP
    """
    num_classes: int
    class_names: list[str]
    num_train: int
    num_valid: int
    skipped: list[tuple[str, str]]
    cfg: DataConfig = dataclasses.field(repr=False)
    # input_context -> unbatched (uint8 (S, S, 3), int32 label), sharded and shuffled.
    make_train: Callable = dataclasses.field(repr=False)
    make_valid: Callable | None = dataclasses.field(repr=False, default=None)

    def train_dataset(self, input_context=None) -> tf.data.Dataset:
        """One epoch of augmented, normalised (B, S, S, 3) float32 / (B,) int32 batches.

        Args:
            input_context: tf.distribute.InputContext; sets the per-replica
                batch and this worker's share of the data.
        """
        size, aug_freq = self.cfg.image_size, self.cfg.aug_freq
        pipeline_id = _pipeline_id(input_context)[1]
        randoms = tf.data.Dataset.random(seed=self.cfg.seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((self.make_train(input_context), randoms))
        ds = ds.map(lambda example, r: (
            _normalise(_augment(example[0], tf.stack([r, pipeline_id]), aug_freq, size)),
            example[1]), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(_per_replica(self.cfg.batch_size, input_context)).prefetch(tf.data.AUTOTUNE)

    def valid_dataset(self, input_context=None) -> tf.data.Dataset | None:
        """One pass over the validation set, not augmented; None when there is none."""
        if self.make_valid is None:
            return None
        ds = self.make_valid(input_context).map(lambda image, label: (_normalise(image), label))
        return ds.batch(_per_replica(self.cfg.batch_size, input_context)).prefetch(tf.data.AUTOTUNE)


def _folder_source(examples: list, cfg: DataConfig, shuffle: bool) -> Callable:
    """input_context -> decoded dataset of ``examples`` [(path, python_path, label)]."""
    paths, python_path, labels = (list(column) for column in zip(*examples))

    def make(input_context=None):
        ds = tf.data.Dataset.from_tensor_slices((paths, np.array(labels, np.int32), python_path))
        ds = ds.shard(*_pipeline_id(input_context))
        return _decoded(ds, lambda p, l, y: _decode_file(p, l, y, cfg.image_size), cfg,
                        shuffle, len(paths))
    return make


def _record_source(records: recordio.RecordSet, examples: list, cfg: DataConfig,
                   shuffle: bool) -> Callable:
    """input_context -> decoded dataset of RecordIO ``examples`` [(offset, _, label)]."""
    offsets, _, labels = (list(column) for column in zip(*examples))

    def read(offset):
        return np.array(records.image_bytes(offset), dtype=object)

    def decode(offset, label):
        data = tf.numpy_function(read, [offset], tf.string, stateful=False)
        return _decode_bytes(tf.ensure_shape(data, []), label, cfg.image_size)

    def make(input_context=None):
        ds = tf.data.Dataset.from_tensor_slices((np.array(offsets, np.int64),
                                                 np.array(labels, np.int32)))
        return _decoded(ds.shard(*_pipeline_id(input_context)), decode, cfg, shuffle, len(offsets))
    return make


def _valid_from_directory(cfg: DataConfig, class_names: list[str]):
    """Validation examples of ``valid_directory``, labelled by training folder name.

    Identity folders the training set lacks are left out (listed in skipped).
    """
    identities, skipped = scan_folder(cfg.valid_directory, "--valid_directory", 1)
    trained = set(class_names)
    skipped += [(os.path.join(cfg.valid_directory, n), "identity not in the training set")
                for n in identities if n not in trained]
    known = {n: identities.get(n, []) for n in class_names}
    examples = _labelled(known, class_names)
    if not examples:
        raise DataError(f"--valid_directory {cfg.valid_directory}: none of its identity "
                        "folders is in the training set")
    return examples, skipped


def _open_folder(cfg: DataConfig) -> TrainingData:
    identities, skipped = scan_folder(cfg.train_directory)
    names = select_identities(identities, cfg)
    if cfg.valid_directory:
        train = _labelled(identities, names)
        valid, more = _valid_from_directory(cfg, names)
        skipped += more
    else:
        train, valid = _split([identities[n] for n in names], cfg.valid_split_ratio, cfg.seed)
    return TrainingData(len(names), names, len(train), len(valid), skipped, cfg,
                        _folder_source(train, cfg, cfg.shuffle),
                        _folder_source(valid, cfg, False) if valid else None)


def _open_shards(cfg: DataConfig) -> TrainingData:
    if cfg.min_images > 1 or cfg.max_identities > 0:
        raise DataError(f"{cfg.train_directory} is packed: --min_images/--max_identities apply "
                        "when packing; pass them to `python -m mfn_tf2.data pack` instead")
    manifest = shards.read_manifest(cfg.train_directory)
    files, counts = manifest["files"], [s["count"] for s in manifest["shards"]]
    names = manifest["class_names"]

    def make(input_context=None):
        workers, worker = _pipeline_id(input_context)
        if workers > len(files):
            raise DataError(f"{cfg.train_directory}: {len(files)} shards cannot feed {workers} "
                            "workers; re-pack with --shards of at least the worker count")
        mine = files[worker::workers]
        records = shards.read_records(mine, shuffle=cfg.shuffle, seed=cfg.seed)
        buffer = min(_SHARD_SHUFFLE, sum(counts[worker::workers]))
        return _decoded(records, lambda d, l: _decode_bytes(d, l, cfg.image_size), cfg,
                        cfg.shuffle, buffer)

    valid, skipped = _valid_from_directory(cfg, names) if cfg.valid_directory else ([], [])
    return TrainingData(len(names), names, manifest["total"], len(valid),
                        [tuple(s) for s in manifest["skipped"]] + skipped, cfg, make,
                        _folder_source(valid, cfg, False) if valid else None)


def _open_recordio(cfg: DataConfig) -> TrainingData:
    """An insightface train.rec folder: identities from the record headers (see recordio.py)."""
    if cfg.valid_directory:
        raise DataError(f"--valid_directory: {cfg.train_directory} is a RecordIO set, whose "
                        "classes are numbers; use --valid_split_ratio instead")
    records = recordio.scan_recordio(cfg.train_directory)
    identities = records.identities()
    names = select_identities(identities, cfg)
    train, valid = _split([identities[n] for n in names], cfg.valid_split_ratio, cfg.seed)
    return TrainingData(len(names), names, len(train), len(valid), records.skipped, cfg,
                        _record_source(records, train, cfg, cfg.shuffle),
                        _record_source(records, valid, cfg, False) if valid else None)


def _open_generator(cfg: DataConfig) -> TrainingData:
    """``data_generator="module:function"`` (see ``open_training_data``)."""
    module_name, _, function_name = cfg.data_generator.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise DataError(f"--data_generator {cfg.data_generator}: cannot import it ({err}); "
                        "give module:function with the module on PYTHONPATH") from None
    returned = function(cfg, None)
    if not (isinstance(returned, tuple) and len(returned) == 2):
        raise DataError(f"--data_generator {cfg.data_generator}: return (dataset, num_classes), "
                        f"not {type(returned).__name__}")
    dataset, num_classes = returned
    size = int(dataset.cardinality())
    if size < 0:
        raise DataError(f"--data_generator {cfg.data_generator}: the dataset is infinite or "
                        "of unknown size; wrap it in tf.data.experimental.assert_cardinality(n)")

    def make(input_context=None):
        ds, _ = function(cfg, input_context)
        return ds.map(lambda image, label: (_resize(image, cfg.image_size),
                                            tf.cast(label, tf.int32)),
                      num_parallel_calls=tf.data.AUTOTUNE)
    return TrainingData(num_classes, [str(i) for i in range(num_classes)], size, 0, [], cfg, make)


# How each kind of input is opened.
_OPENERS = {"generator": _open_generator, "shards": _open_shards, "recordio": _open_recordio,
            "folder": _open_folder}


def open_training_data(cfg: DataConfig) -> TrainingData:
    """Checks and opens the training input described by ``cfg``.

    Args:
        cfg: the data config; ``data_generator`` wins over ``train_directory``,
            which is read as shards when it holds manifest.json, as an
            insightface RecordIO set when it holds train.rec, else as
            identity folders.

    Returns:
        TrainingData. Unusable files are left out with one warning.

    Raises:
        DataError: one line naming the folder, file or flag and what to do.

    ``data_generator="module:function"``: ``function(cfg, input_context)``
    returns ``(dataset, num_classes)``. The dataset yields unbatched (image,
    label): image (H, W, 3) pixels in 0..255 (uint8 or float, any size), label
    an integer below num_classes. It must be finite with a known cardinality
    (wrap it in ``tf.data.experimental.assert_cardinality(n)`` if needed). Its
    order is used as given: shuffle it, and shard it by ``input_context``, in
    the function; this pipeline resizes, augments, normalises, batches and
    prefetches. There is no validation set. For example, in ``my_faces.py``::

        def faces(cfg, input_context):
            images = tf.zeros([100, 64, 64, 3], tf.uint8)
            ds = tf.data.Dataset.from_tensor_slices((images, tf.range(100) % 10))
            return ds.shuffle(100, seed=cfg.seed), 10

    Example:
        >>> data = open_training_data(DataConfig(train_directory="faces/"))  # doctest: +SKIP
        >>> data.num_classes, data.num_train, data.num_valid                  # doctest: +SKIP
        (134, 2906, 323)
    """
    kind = ("generator" if cfg.data_generator else
            "shards" if shards.is_shard_directory(cfg.train_directory) else
            "recordio" if recordio.is_recordio_directory(cfg.train_directory) else "folder")
    data = _OPENERS[kind](cfg)
    warn_skipped(data.skipped)
    return data


def pack(cfg: DataConfig, out_dir: str, num_shards: int) -> dict:
    """Scans ``cfg.train_directory`` (identity folders or a RecordIO set, with its filters)
    and writes shards to ``out_dir``."""
    if recordio.is_recordio_directory(cfg.train_directory):
        records = recordio.scan_recordio(cfg.train_directory)
        identities, skipped = records.identities(), records.skipped
        read = {"read": lambda offset, _: records.image_bytes(offset)}
    else:
        (identities, skipped), read = scan_folder(cfg.train_directory), {}
    names = select_identities(identities, cfg)
    warn_skipped(skipped)
    return shards.write_shards(_labelled(identities, names), names, out_dir, num_shards,
                               skipped=skipped, seed=cfg.seed, **read)


def main(argv=None) -> None:
    """``python -m mfn_tf2.data pack TRAIN_DIRECTORY OUT_DIR --shards N``."""
    parser = argparse.ArgumentParser(prog="python -m mfn_tf2.data",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack", help="write a face folder (or an insightface train.rec "
                                 "folder) as TFRecord shards")
    cli.add_config_flags(packer, DataConfig, positional=("train_directory",), skip=tuple(
        f.name for f in dataclasses.fields(DataConfig)
        if f.name not in ("train_directory", "min_images", "max_identities", "seed")))
    packer.add_argument("out_dir", help="output folder of the shards")
    packer.add_argument("--shards", type=int, default=8, help="number of shard files (default: 8)")
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"data": DataConfig})["data"]
    try:
        info = pack(cfg, ns.out_dir, ns.shards)
    except (DataError, OSError) as err:  # OSError: an unwritable OUT_DIR
        cli.fail(str(err))
    print(f"packed {info['total']} images of {info['num_classes']} identities into "
          f"{len(info['shards'])} shards in {ns.out_dir} ({len(info['rewritten'])} written now, "
          f"{len(info['skipped'])} files skipped)")


__all__ = ["DataError", "TrainingData", "open_training_data", "scan_folder", "select_identities",
           "pack", "main"]

if __name__ == "__main__":
    main()
