"""insightface RecordIO training sets (train.rec + train.idx + property), written here from the spec."""
import hashlib
import json
import struct
from collections import Counter

import numpy as np
import pytest

from conftest import TINY_MODEL_FLAGS, make_face_tree, run_cli, run_main, write_plain_pairs
from insightface_files import HEADER, MAGIC, frame, header, tree_records, write_rec
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import DataError
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.recordio import read_record, scan_recordio, unpack

SIZE = 32


def config(root, **changes) -> DataConfig:
    base = dict(train_directory=str(root), batch_size=8, image_size=SIZE, valid_split_ratio=0.0,
                shuffle=False, aug_freq=0.0)
    return DataConfig(**{**base, **changes})


def train_rec(save, rec, faces, pairs, *extra):
    """The train CLI on a .rec folder, verified on pairs of the source folder."""
    return run_cli("train", rec, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "8", "--learning_rate",
                   "0.01", "--epochs", "1", "--evaluate_epochs", "1", "--save_model_directory", save, *extra)


def contents(data) -> Counter:
    """(image hash, identity name) of one epoch."""
    return Counter((hashlib.sha1(x.tobytes()).hexdigest(), data.class_names[int(y)])
                   for xs, ys in data.train_dataset().as_numpy_iterator() for x, y in zip(xs, ys))


def by_index(data) -> Counter:
    """The same, identities named by their folder index (a .rec's labels)."""
    return Counter((h, int(name)) for (h, name), n in contents(data).items() for _ in range(n))


def test_rec_holds_the_same_images_and_labels_as_its_folder(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=5, n_imgs=6)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    from_rec, from_folder = open_training_data(config(rec)), open_training_data(config(faces))
    assert (from_rec.num_classes, from_rec.num_train, from_rec.skipped) == (5, 30, [])
    assert from_rec.class_names == ["0", "1", "2", "3", "4"]  # label i is the set's label i
    folder_items = Counter((h, from_folder.class_names.index(n)) for (h, n), k in
                           contents(from_folder).items() for _ in range(k))
    assert by_index(from_rec) == folder_items


def test_full_lfw_train_as_rec_has_the_folders_identity_and_image_counts(lfw_root, tmp_path):
    folder = open_training_data(config(lfw_root / "train"))
    rec = open_training_data(config(write_rec(tree_records(lfw_root / "train"), tmp_path / "rec")))
    assert (rec.num_classes, rec.num_train) == (folder.num_classes, folder.num_train) == (4859, 10562)
    assert rec.skipped == folder.skipped == []


def test_multi_part_records_flag_labels_and_no_range_record(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=2, n_imgs=2)
    records = tree_records(faces)
    # A JPEG comment holding the magic number at a 4-byte aligned spot of the record's data:
    # the writer splits it into parts, the reader must join them with the magic in between.
    label, jpeg = records[0]
    comment = b"\xff\xfe\x00\x0c" + b"ab" + struct.pack("<I", MAGIC) + b"cdef"
    assert (HEADER.size + 2 + 6) % 4 == 0
    records[0] = (label, jpeg[:2] + comment + jpeg[2:])
    assert frame(header(0) + records[0][1]).count(struct.pack("<I", MAGIC)) == 2  # two parts
    rec = write_rec(records, tmp_path / "rec", range_record=False)
    found = scan_recordio(str(rec))
    assert found.skipped == [] and found.labels.tolist() == [0, 0, 1, 1]
    assert found.image_bytes(found.offsets[0]) == records[0][1]
    # flag > 0: the labels follow the header and the first one is the class
    with open(tmp_path / "one.rec", "wb") as f:
        f.write(frame(header([3.0, 9.0]) + b"\xff\xd8\xff"))
    with open(tmp_path / "one.rec", "rb") as f:
        head, labels, image = unpack(read_record(f, 0))
    assert head[0] == 2 and labels.tolist() == [3.0, 9.0] and image == b"\xff\xd8\xff"


@pytest.mark.slow
def test_broken_records_are_skipped_and_counted(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=4, n_imgs=5)
    records = tree_records(faces)
    records[3] = (records[3][0], records[3][1][: len(records[3][1]) // 2])  # truncated JPEG
    records[7] = (records[7][0], b"GIF89a not a face")
    rec = write_rec(records, tmp_path / "rec")
    idx = (rec / "train.idx").read_text().splitlines()
    key, offset = idx[12].split("\t")
    data = bytearray((rec / "train.rec").read_bytes())
    data[int(offset)] ^= 0xFF  # a bad magic number
    (rec / "train.rec").write_bytes(bytes(data))
    found = open_training_data(config(rec))
    reasons = dict(found.skipped)
    assert found.num_train == 17 and len(found.skipped) == 3
    assert "broken image" in reasons[f"{rec}/train.rec#4"]
    assert reasons[f"{rec}/train.rec#8"] == "not a JPEG or PNG image"
    assert reasons[f"{rec}/train.rec#{key}"] == "bad magic number"
    assert sum(1 for _ in found.train_dataset().unbatch()) == 17
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    proc = train_rec(tmp_path / "weights", rec, faces, pairs, "--valid_split_ratio", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 identities, 17 training images, 3 files skipped" in proc.stdout
    assert "left out 3 unusable file(s)" in proc.stderr


def test_pack_converts_a_rec_to_shards_with_the_same_images(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=4, n_imgs=5)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    proc = run_cli("data", "pack", rec, tmp_path / "shards", "--shards", "3", "--min_images", "5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "packed 20 images of 4 identities into 3 shards" in proc.stdout
    assert json.loads((tmp_path / "shards" / "labels.json").read_text()) == ["0", "1", "2", "3"]
    assert contents(open_training_data(config(tmp_path / "shards"))) == contents(open_training_data(config(rec)))


def _counts_line(root, **changes) -> str:
    data = open_training_data(config(root, **changes))
    return f"{data.num_classes} identities, {data.num_train} training images, {data.num_valid} validation"


def test_rec_has_the_folders_counts_and_split(tmp_path):
    # Two workers train on a .rec in test_multiworker; one worker in test_broken_records_are_skipped_and_counted.
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=6)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    expected = _counts_line(faces, valid_split_ratio=0.1)
    assert _counts_line(rec, valid_split_ratio=0.1) == expected == "6 identities, 32 training images, 4 validation"


def test_rec_has_no_valid_directory(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=2, n_imgs=2)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    with pytest.raises(DataError, match=f"--valid_directory: {rec} is a RecordIO set, whose classes are "
                                        "numbers; use --valid_split_ratio instead"):
        open_training_data(config(rec, valid_directory=str(faces)))


@pytest.mark.parametrize("row", ["no_idx", "bad_idx_line"])
def test_rec_folder_errors(tmp_path, row):
    faces = make_face_tree(tmp_path / "faces", n_ids=2, n_imgs=2)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    if row == "no_idx":
        (rec / "train.idx").unlink()
        expected = (f"{rec}/train.idx: missing; an insightface data set needs train.rec and its "
                    "train.idx (key<TAB>offset lines)")
    else:
        (rec / "train.idx").write_text("0\t0\n1 x\n")
        expected = f"{rec}/train.idx:2: expected 'key<TAB>offset', got '1 x'"
    proc = run_main("data", "pack", rec, tmp_path / "shards", "--shards", "1")  # refused before any work
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == f"error: {expected}"
    with pytest.raises(DataError):
        open_training_data(config(rec))


def test_scan_labels_many_records(tmp_path):
    # 20,000 tiny records, scanned in chunks
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 60 + b"\xff\xd9"
    write_rec([(k // 4, jpeg) for k in range(20000)], tmp_path / "rec")
    found = scan_recordio(str(tmp_path / "rec"))
    assert len(found.offsets) == 20000 and found.skipped == []
    assert np.array_equal(found.labels, np.arange(20000) // 4)
