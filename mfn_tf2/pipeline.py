"""The training input pipeline: face folders, packed shards, RecordIO or a generator -> batches.

``open_training_data(cfg)`` does every check up front, before any training
work (see ``folders.scan_folder``: layout, every file probed, unusable files
left out with one warning) and returns a ``TrainingData`` that builds the
tf.data pipelines:

    paths --shard--> shuffle --decode, resize--> (cache) --augment--> normalise --> batch --> prefetch

Files ``tf.io.decode_image`` reads right (JPEG incl. grayscale and CMYK, every
PNG incl. 16-bit and palette, 24/32-bit BMP) decode in TensorFlow in parallel;
the rest (palette/1-bit BMP, PGM/PPM, TIFF, WebP, GIF) go through
``images.read_rgb``. Resizing, augmentation and normalisation are
``preprocess.tf_resize``, ``augment`` and ``normalise``. Randomness (shuffle
order and augmentation) comes from ``cfg.seed`` and changes every epoch, the
same way on every run. A file that still fails to decode (the probe makes this
rare) is dropped by tf.data's ``ignore_errors`` instead of stopping training.

What ``cfg.train_directory`` holds picks the opener: ``manifest.json`` a pack
of shards (``shards.py``; no validation split unless ``valid_directory`` is
given), ``train.rec`` an insightface RecordIO set (``recordio.py``), else
identity folders (``folders.py``).

Example (the 3 bundled identities with the most images, at 64 px):
    >>> data = open_training_data(DataConfig(train_directory="data/lfw_demo/train", batch_size=8,
    ...                                      max_identities=3), image_size=64)
    >>> data.class_names, data.num_train, data.num_valid
    (['Colin_Powell', 'Donald_Rumsfeld', 'Tony_Blair'], 451, 50)
    >>> images, labels = next(iter(data.train_dataset()))
    >>> images.shape, labels.dtype
    (TensorShape([8, 64, 64, 3]), tf.int32)
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import numpy as np

from mfn_tf2 import recordio, shards
from mfn_tf2.backend import tf
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import (DataError, labelled_examples, scan_folder, select_identities,
                             split_examples, valid_examples)
from mfn_tf2.images import read_rgb, warn_skipped
from mfn_tf2.preprocess import augment, normalise, tf_resize

# Records held by the shuffle of a shard pipeline (shards are packed in random order).
_SHARD_SHUFFLE = 10_000


def _decode_file(path, label, python_path, size: int):
    """A file path -> (uint8 (size, size, 3), label); see ``folders`` for the two paths."""
    def python_read():
        image = tf.numpy_function(lambda p: read_rgb(p.decode()), [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    image = tf.cond(python_path, python_read, lambda: tf.io.decode_image(
        tf.io.read_file(path), channels=3, expand_animations=False))
    return tf_resize(image, size), label


def _decode_bytes(data, label, size: int):
    """Encoded bytes of a shard record -> (uint8 (size, size, 3), label)."""
    return tf_resize(tf.io.decode_image(data, channels=3, expand_animations=False), size), label


def _decoded(records, decode, cfg: DataConfig, shuffle: bool, buffer: int):
    """Shuffles (cheap records first, unless cached), decodes, drops failures, caches."""
    if shuffle and not cfg.cache:
        records = records.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    if cfg.cache:
        ds = ds.cache()
        ds = ds.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True) if shuffle else ds
    return ds


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

    Example (what ``fit`` gets as ``validation_data``: normalised, not augmented):
        >>> data = open_training_data(DataConfig(train_directory="data/lfw_demo/train", batch_size=8,
        ...                                      max_identities=3), image_size=64)
        >>> images, labels = next(iter(data.valid_dataset()))
        >>> images.shape, bool(-1 <= images.numpy().min() < images.numpy().max() <= 1)
        (TensorShape([8, 64, 64, 3]), True)
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
            normalise(augment(example[0], tf.stack([r, pipeline_id]), aug_freq, size)),
            example[1]), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(_per_replica(self.cfg.batch_size, input_context)).prefetch(tf.data.AUTOTUNE)

    def valid_dataset(self, input_context=None) -> tf.data.Dataset | None:
        """One pass over the validation set, not augmented; None when there is none."""
        if self.make_valid is None:
            return None
        ds = self.make_valid(input_context).map(lambda image, label: (normalise(image), label))
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


def _open_folder(cfg: DataConfig) -> TrainingData:
    identities, skipped = scan_folder(cfg.train_directory)
    names = select_identities(identities, cfg)
    if cfg.valid_directory:
        train = labelled_examples(identities, names)
        valid, more = valid_examples(cfg, names)
        skipped += more
    else:
        train, valid = split_examples([identities[n] for n in names], cfg.valid_split_ratio, cfg.seed)
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

    valid, skipped = valid_examples(cfg, names) if cfg.valid_directory else ([], [])
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
    train, valid = split_examples([identities[n] for n in names], cfg.valid_split_ratio, cfg.seed)
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
        return ds.map(lambda image, label: (tf_resize(image, cfg.image_size),
                                            tf.cast(label, tf.int32)),
                      num_parallel_calls=tf.data.AUTOTUNE)
    return TrainingData(num_classes, [str(i) for i in range(num_classes)], size, 0, [], cfg, make)


# How each kind of input is opened.
_OPENERS = {"generator": _open_generator, "shards": _open_shards, "recordio": _open_recordio,
            "folder": _open_folder}


def open_training_data(cfg: DataConfig, image_size: int | None = None) -> TrainingData:
    """Checks and opens the training input described by ``cfg``.

    Args:
        cfg: the data config; ``data_generator`` wins over ``train_directory``,
            which is read as shards when it holds manifest.json, as an
            insightface RecordIO set when it holds train.rec, else as
            identity folders.
        image_size: the model's input side, which the images are resized to;
            it replaces ``cfg.image_size`` (the model decides; runners pass
            ``model_cfg.image_size`` here and nowhere else).

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

    Example (identities with at least 20 images; 10 % of each kept for validation):
        >>> data = open_training_data(DataConfig(train_directory="data/lfw_demo/train", min_images=20))
        >>> data.num_classes, data.num_train, data.num_valid, data.skipped
        (50, 1892, 208, [])
    """
    if image_size is not None:
        cfg = dataclasses.replace(cfg, image_size=image_size)
    kind = ("generator" if cfg.data_generator else
            "shards" if shards.is_shard_directory(cfg.train_directory) else
            "recordio" if recordio.is_recordio_directory(cfg.train_directory) else "folder")
    data = _OPENERS[kind](cfg)
    warn_skipped(data.skipped)
    return data


__all__ = ["TrainingData", "open_training_data"]
