"""TFRecord shards: a face folder packed into N files that read fast and in parallel.

A million small JPEGs read slowly from network disks and object stores; a few
hundred large files stream well and split cleanly across training workers. A
packed directory holds:

    train-00000-of-00008.tfrecord ...   tf.train.Example {image: bytes, label: int64}
    train-00000-of-00008.tfrecord.json  that shard's count, size, sha256 and plan
    labels.json                         ["identity_a", "identity_b", ...]
    manifest.json                       shards, counts, checksums, classes, skipped

Images keep their original encoded bytes; only the few files that
``tf.io.decode_image`` cannot read right (palette or 1-bit BMP) are re-encoded
as 8-bit PNG. Examples are spread over the shards in a seeded random order, so
every shard mixes identities. Writing is resumable: each shard goes to a
temporary name and is renamed when complete, with a small JSON beside it; a
rerun keeps every shard whose file still matches that JSON's checksum and
plan (the list of examples it should hold) and rewrites only the others.
``manifest.json`` is written last, so its presence means the pack is complete.

``pack`` scans a face folder (or an insightface RecordIO set) with the
training filters and writes it; ``python -m mfn_tf2.data pack`` is its shell.
``read_manifest`` and ``read_records`` read a pack back for the pipeline.

Example (two bundled faces in two shards; a second run finds both complete):
    >>> import shutil, tempfile
    >>> out, faces = tempfile.mkdtemp(), "data/lfw_demo/heldout/"
    >>> names = ["Aaron_Tippin", "Abdel_Nasser_Assidi"]
    >>> examples = [(f"{faces}{name}/{name}_0001.jpg", False, label) for label, name in enumerate(names)]
    >>> info = write_shards(examples, names, out, num_shards=2)
    >>> info["total"], info["rewritten"], write_shards(examples, names, out, 2)["rewritten"]
    (2, ['train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord'], [])
    >>> sorted(int(label) for _, label in read_records(read_manifest(out)["files"], shuffle=False, seed=0))
    [0, 1]
    >>> shutil.rmtree(out)
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os

import numpy as np

from mfn_tf2 import recordio
from mfn_tf2.backend import tf
from mfn_tf2.config import DataConfig
from mfn_tf2.fileio import OutputLock, write_json
from mfn_tf2.folders import DataError, labelled_examples, scan_folder, select_identities
from mfn_tf2.images import ImageError, encode_png, read_rgb, warn_skipped

MANIFEST = "manifest.json"
LABELS = "labels.json"
_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
             "label": tf.io.FixedLenFeature([], tf.int64)}
# Shards read at once by a training pipeline; more adds memory, not speed.
_MAX_CYCLE = 16


def shard_name(index: int, num_shards: int) -> str:
    """The file name of shard ``index`` (``train-00003-of-00008.tfrecord``)."""
    return f"train-{index:05d}-of-{num_shards:05d}.tfrecord"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _encoded(path: str, reencode: bool) -> bytes:
    """The bytes stored for one image: the file itself, or an 8-bit RGB PNG."""
    if not reencode:
        with open(path, "rb") as f:
            return f.read()
    return encode_png(read_rgb(path))


def _example(data: bytes, label: int) -> bytes:
    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _plan(examples) -> str:
    """A fingerprint of what a shard should hold, so a changed input is re-packed."""
    return hashlib.sha256(json.dumps(examples).encode()).hexdigest()


def _is_complete(path: str, plan: str) -> dict | None:
    """The sidecar of a finished shard that matches ``plan``, else None."""
    try:
        with open(path + ".json") as f:
            info = json.load(f)
        done = info["plan"] == plan and info["sha256"] == _sha256(path)
    except (OSError, ValueError, KeyError):
        return None
    return info if done else None


def _write_shard(out_dir: str, name: str, examples: list, read=_encoded) -> dict:
    """Writes one shard (temp name, then rename) and its sidecar; returns the sidecar."""
    path = os.path.join(out_dir, name)
    plan = _plan(examples)
    done = _is_complete(path, plan)
    if done:
        return dict(done, rewritten=False)
    tmp = os.path.join(out_dir, f".tmp-{name}")
    count, skipped = 0, []
    with tf.io.TFRecordWriter(tmp) as writer:
        for image_path, reencode, label in examples:
            try:
                writer.write(_example(read(image_path, reencode), label))
                count += 1
            except (OSError, ImageError) as err:
                skipped.append([image_path, str(err)])
    os.replace(tmp, path)
    info = {"file": name, "count": count, "bytes": os.path.getsize(path),
            "sha256": _sha256(path), "plan": plan, "skipped": skipped}
    write_json(path + ".json", info)
    return dict(info, rewritten=True)


def write_shards(examples, class_names, out_dir: str, num_shards: int, *,
                 skipped=(), seed: int = 0, workers: int = 0, read=_encoded) -> dict:
    """Packs labelled images into ``num_shards`` TFRecord files (resumable).

    Args:
        examples: (path, reencode, label) triples; ``reencode`` marks files
            that tf.io.decode_image cannot read right (stored as PNG instead).
        class_names: label i -> identity name (written to labels.json).
        out_dir: the output folder (created).
        num_shards: number of shard files, at least 1 and at most len(examples).
        skipped: (path, reason) pairs already left out, recorded in the manifest.
        seed: seeds the spreading of examples over the shards.
        workers: shards written at once (0: the thread pool's default).
        read: (path, reencode) -> the bytes stored; the default reads the file
            (a RecordIO set passes record offsets and its own reader).

    Returns:
        The manifest dict; ``manifest["rewritten"]`` lists the shard files
        written by this call (the others were complete already).

    Raises:
        DataError: num_shards out of range.
        OutputError: ``out_dir`` unwritable, full, or being packed by another run.
    """
    if not 1 <= num_shards <= len(examples):
        raise DataError(f"--shards {num_shards}: choose between 1 and the {len(examples)} "
                        "images to pack")
    order = np.random.default_rng(seed).permutation(len(examples))
    plans = [[list(examples[i]) for i in order[k::num_shards]] for k in range(num_shards)]
    names = [shard_name(k, num_shards) for k in range(num_shards)]
    with OutputLock(out_dir), concurrent.futures.ThreadPoolExecutor(workers or None) as pool:
        infos = list(pool.map(lambda k: _write_shard(out_dir, names[k], plans[k], read),
                              range(num_shards)))
    write_json(os.path.join(out_dir, LABELS), list(class_names))
    manifest = {
        "total": sum(info["count"] for info in infos),
        "num_classes": len(class_names),
        "shards": [{key: info[key] for key in ("file", "count", "bytes", "sha256")}
                   for info in infos],
        "skipped": [list(s) for s in skipped] + [s for info in infos for s in info["skipped"]],
    }
    write_json(os.path.join(out_dir, MANIFEST), manifest)
    return dict(manifest, rewritten=[info["file"] for info in infos if info["rewritten"]])


def pack(cfg: DataConfig, out_dir: str, num_shards: int) -> dict:
    """Scans ``cfg.train_directory`` (identity folders or a RecordIO set) and packs it into shards.

    The command ``python -m mfn_tf2.data pack``. ``cfg.min_images``,
    ``max_identities`` and ``seed`` choose the identities and the spreading,
    as they would in training; skipped files are warned about once and
    recorded in the manifest.

    Returns:
        The manifest dict of ``write_shards``.

    Raises:
        DataError: a bad folder or ``num_shards``.
        OutputError: ``out_dir`` unwritable or being packed by another run.
    """
    if recordio.is_recordio_directory(cfg.train_directory):
        records = recordio.scan_recordio(cfg.train_directory)
        identities, skipped = records.identities(), records.skipped
        read = {"read": lambda offset, _: records.image_bytes(offset)}
    else:
        (identities, skipped), read = scan_folder(cfg.train_directory), {}
    names = select_identities(identities, cfg)
    warn_skipped(skipped)
    return write_shards(labelled_examples(identities, names), names, out_dir, num_shards,
                        skipped=skipped, seed=cfg.seed, **read)


def is_shard_directory(path: str) -> bool:
    """True when ``path`` is a finished pack (holds manifest.json)."""
    return os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(directory: str) -> dict:
    """Loads manifest.json and labels.json, checking that every shard file is there.

    Checksums are not recomputed (too slow for every run); a missing shard or
    one whose size changed is an error.

    Returns:
        The manifest dict plus ``class_names`` and ``files`` (full shard paths).

    Raises:
        DataError: unreadable manifest or labels, missing or resized shard.
    """
    try:
        with open(os.path.join(directory, MANIFEST)) as f:
            manifest = json.load(f)
        with open(os.path.join(directory, LABELS)) as f:
            manifest["class_names"] = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"{directory}: cannot read the pack ({err}); re-run "
                        "`python -m mfn_tf2.data pack` into it") from None
    manifest["files"] = []
    for shard in manifest["shards"]:
        path = os.path.join(directory, shard["file"])
        if not os.path.isfile(path) or os.path.getsize(path) != shard["bytes"]:
            state = "is missing" if not os.path.isfile(path) else "has changed size"
            raise DataError(f"{path} {state}: re-run `python -m mfn_tf2.data pack` with the "
                            "same arguments to rewrite it")
        manifest["files"].append(path)
    return manifest


def _parse(record):
    parsed = tf.io.parse_single_example(record, _FEATURES)
    return parsed["image"], tf.cast(parsed["label"], tf.int32)


def read_records(files, *, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(encoded image bytes, int32 label) from shard files, interleaved.

    Args:
        files: shard paths (one worker's share).
        shuffle: visit the files in a new seeded order every iteration.
        seed: seed of that order.

    Returns:
        An unbatched, undecoded dataset; deterministic for a given seed.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), _MAX_CYCLE),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(_parse, num_parallel_calls=tf.data.AUTOTUNE)


__all__ = ["MANIFEST", "LABELS", "shard_name", "write_shards", "pack",
           "is_shard_directory", "read_manifest", "read_records"]
