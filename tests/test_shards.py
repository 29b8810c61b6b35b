"""TFRecord shards: packing, resuming, reading back (mfn_tf2/shards.py + the pack CLI)."""
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

from conftest import REPO, make_face_tree, run_cli, run_main
from mfn_tf2.backend import tf
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import DataError
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.shards import pack, read_manifest

SIZE = 32


def config(root, **changes) -> DataConfig:
    base = dict(train_directory=str(root), batch_size=8, image_size=SIZE, valid_split_ratio=0.0,
                aug_freq=0.0)
    return DataConfig(**{**base, **changes})


def examples(ds) -> Counter:
    """Counter of (image bytes, label) over one pass of a batched dataset."""
    return Counter((image.tobytes(), int(label)) for images, labels in ds.as_numpy_iterator()
                   for image, label in zip(images, labels))


def test_pack_then_read_gives_the_folder_examples(face_tree, tmp_path):
    person = sorted(face_tree.iterdir())[0]
    (person / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (20, 20), (12, 250, 100)).convert("P", palette=Image.ADAPTIVE).save(
        person / "palette.bmp")
    out = tmp_path / "packed"
    info = pack(config(face_tree), str(out), 3)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["total"] == 31 and manifest["num_classes"] == 6
    assert [s["count"] for s in manifest["shards"]] == [11, 10, 10]
    assert [p.split("/")[-1] for p, _ in manifest["skipped"]] == ["broken.jpg"]
    for shard in manifest["shards"]:
        assert hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
    people = sorted(p.name for p in face_tree.iterdir())
    assert json.loads((out / "labels.json").read_text()) == people
    assert len(info["rewritten"]) == 3

    folder = open_training_data(config(face_tree))
    packed = open_training_data(config(out))
    assert (packed.num_classes, packed.num_train, packed.num_valid) == (6, 31, 0)
    assert packed.class_names == folder.class_names
    assert [p for p, _ in packed.skipped] == [p for p, _ in folder.skipped]
    assert examples(packed.train_dataset()) == examples(folder.train_dataset())


def test_resume_rewrites_only_the_missing_shard(face_tree, tmp_path):
    out = tmp_path / "packed"
    pack(config(face_tree), str(out), 4)
    files = read_manifest(str(out))["files"]
    before = {f: os.stat(f).st_mtime_ns for f in files}
    os.remove(files[2])
    with pytest.raises(DataError, match="is missing: re-run"):
        open_training_data(config(out))

    info = pack(config(face_tree), str(out), 4)
    assert info["rewritten"] == [os.path.basename(files[2])]
    assert all(os.stat(f).st_mtime_ns == before[f] for f in files if f != files[2])
    assert sum(examples(open_training_data(config(out)).train_dataset()).values()) == 30

    next(next(face_tree.iterdir()).iterdir()).unlink()  # a changed input is packed anew
    info = pack(config(face_tree), str(out), 4)
    assert info["total"] == 29 and info["rewritten"]


def test_workers_read_disjoint_shards(face_tree, tmp_path):
    out = tmp_path / "packed"
    pack(config(face_tree), str(out), 4)
    data = open_training_data(config(out))
    parts = [examples(data.train_dataset(tf.distribute.InputContext(2, worker, 2)))
             for worker in range(2)]
    assert parts[0] + parts[1] == examples(data.train_dataset())
    assert not parts[0] & parts[1]
    with pytest.raises(DataError, match="4 shards cannot feed 5 workers"):
        data.train_dataset(tf.distribute.InputContext(5, 0, 5))


def test_shards_with_valid_directory_and_filters(face_tree, tmp_path):
    out = tmp_path / "packed"
    pack(config(face_tree, max_identities=4), str(out), 2)
    valid = make_face_tree(tmp_path / "valid", n_ids=2, n_imgs=2)
    data = open_training_data(config(out, valid_directory=str(valid)))
    assert (data.num_classes, data.num_train, data.num_valid) == (4, 20, 4)
    assert sum(examples(data.valid_dataset()).values()) == 4
    with pytest.raises(DataError, match="apply when packing"):
        open_training_data(config(out, min_images=3))


def test_pack_cli(face_tree, tmp_path):
    out = tmp_path / "packed"
    done = run_cli("data", "pack", face_tree, out, "--shards", 2, "--max_identities", 3)
    assert done.returncode == 0, done.stderr
    assert "packed 15 images of 3 identities into 2 shards" in done.stdout
    assert read_manifest(str(out))["total"] == 15

    # The refusals in-process (the CLI's own main): one line each, no process start.
    bad = run_main("data", "pack", tmp_path / "nowhere", out)
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --train_directory")
    too_many = run_main("data", "pack", face_tree, tmp_path / "o2", "--shards", 99)
    assert too_many.returncode != 0 and "error: --shards 99" in too_many.stderr


def test_unreadable_folder_is_a_clear_error(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=2)
    locked = faces / sorted(p.name for p in faces.iterdir())[1]
    locked.chmod(0)
    # Root reads anything: drop the capabilities that let it (setpriv, util-linux).
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    as_user = drop if os.geteuid() == 0 else []
    try:
        done = subprocess.run([*as_user, sys.executable, "-m", "mfn_tf2.data", "pack", str(faces),
                               str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO,
                              timeout=300)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"error: {locked}: permission denied; make the folder readable"
