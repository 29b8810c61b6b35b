"""The training input pipeline on real face folders (mfn_tf2/folders.py, mfn_tf2/pipeline.py)."""
import io
import logging
import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from conftest import make_face_tree
from mfn_tf2.backend import tf
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import DataError
from mfn_tf2.images import read_rgb
from mfn_tf2.pipeline import open_training_data

SIZE = 32


def config(root, **changes) -> DataConfig:
    base = dict(train_directory=str(root), batch_size=8, image_size=SIZE, valid_split_ratio=0.0)
    return DataConfig(**{**base, **changes})


def examples(ds) -> list[tuple[bytes, int]]:
    """(image bytes, label) of every element of a batched dataset, in order."""
    return [(image.tobytes(), int(label)) for images, labels in ds.as_numpy_iterator()
            for image, label in zip(images, labels)]


def expected_input(path) -> np.ndarray:
    """What the pipeline should give for one file without augmentation."""
    resized = tf.image.resize(read_rgb(path), [SIZE, SIZE], antialias=True)
    return (np.round(np.clip(resized.numpy(), 0, 255)) - 127.5) / 128


def test_batch_shapes_values_and_labels_follow_folders(face_tree):
    data = open_training_data(config(face_tree, shuffle=False, aug_freq=0.0))
    people = sorted(p.name for p in face_tree.iterdir())
    assert data.class_names == people and data.num_classes == 6
    assert (data.num_train, data.num_valid, data.skipped) == (30, 0, [])
    assert data.valid_dataset() is None

    images, labels = next(iter(data.train_dataset()))
    assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == tf.float32
    assert labels.shape == (8,) and labels.dtype == tf.int32
    assert -1.0 <= float(tf.reduce_min(images)) < float(tf.reduce_max(images)) <= 1.0

    files = [f for person in people for f in sorted((face_tree / person).iterdir())]
    got = [(img, label) for batch in data.train_dataset() for img, label in zip(*batch)]
    assert len(got) == 30
    for f, (image, label) in zip(files, got):
        assert data.class_names[int(label)] == f.parent.name
        # PIL and TF decode JPEG with different IDCTs: a level or two apart
        np.testing.assert_allclose(image.numpy(), expected_input(f), atol=3 / 128)


def test_same_seed_same_batches_other_seed_other_order(face_tree):
    first = [examples(open_training_data(config(face_tree, seed=s)).train_dataset().take(1))
             for s in (3, 3, 4)]
    assert first[0] == first[1]
    assert [lab for _, lab in first[0]] != [lab for _, lab in first[2]]

    ds = open_training_data(config(face_tree, seed=3)).train_dataset()
    epoch1, epoch2 = examples(ds), examples(ds)
    assert epoch1 != epoch2  # reshuffled and re-augmented every epoch
    assert sorted(lab for _, lab in epoch1) == sorted(lab for _, lab in epoch2)


def test_augmentation_frequency(face_tree):
    plain = set(examples(open_training_data(config(face_tree, aug_freq=0.0)).train_dataset()))
    always = examples(open_training_data(config(face_tree, aug_freq=1.0)).train_dataset())
    assert len(always) == 30 and not plain & set(always)
    half = examples(open_training_data(config(face_tree, aug_freq=0.5)).train_dataset())
    assert 0 < len(plain & set(half)) < 30


def test_stratified_split_keeps_every_identity(tmp_path):
    root = make_face_tree(tmp_path / "faces", n_ids=5, n_imgs=10)
    make_face_tree(tmp_path / "single", n_ids=7, n_imgs=1)
    single = sorted((tmp_path / "single").iterdir())[-1]
    shutil.move(single, root / single.name)

    data = open_training_data(config(root, valid_split_ratio=0.3, aug_freq=0.0))
    assert data.num_classes == 6 and data.num_train + data.num_valid == 51
    assert data.num_valid == 15  # 3 of each 10, none of the single image
    train, valid = examples(data.train_dataset()), examples(data.valid_dataset())
    assert (len(train), len(valid)) == (data.num_train, data.num_valid)
    assert {lab for _, lab in train} == set(range(6))
    assert data.class_names.index(single.name) not in {lab for _, lab in valid}
    assert not {img for img, _ in train} & {img for img, _ in valid}
    for label, count in Counter(lab for _, lab in valid).items():
        assert 1 <= count <= 9


def test_broken_files_are_skipped_counted_and_warned_once(face_tree, caplog):
    person = sorted(face_tree.iterdir())[0]
    jpeg, png = sorted(person.iterdir())[0].read_bytes(), io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(png, format="PNG")
    broken = {"truncated.jpg": jpeg[: len(jpeg) // 2], "empty.jpg": b"",
              "text.jpg": b"this is not an image\n", "truncated.png": png.getvalue()[:-20],
              "notes.txt": b"hello"}
    for name, content in broken.items():
        (person / name).write_bytes(content)
    Image.new("RGB", (8, 8)).save(person / "gif.png", format="GIF")  # an image by content, whatever its name

    with caplog.at_level(logging.WARNING, logger="mfn_tf2.images"):
        data = open_training_data(config(face_tree))
    assert data.num_train == 31
    assert sorted(p.split("/")[-1] for p, _ in data.skipped) == sorted(broken)
    assert len(caplog.records) == 1 and "5 unusable file(s)" in caplog.records[0].getMessage()
    assert len(examples(data.train_dataset())) == 31


def odd_images(folder):
    """Writes odd-but-valid files; returns {name: RGB the pipeline must give}."""
    folder.mkdir()
    Image.new("L", (50, 40), 200).save(folder / "a_gray.png")
    Image.new("RGBA", (40, 40), (10, 20, 30, 128)).save(folder / "b_rgba.png")
    Image.fromarray(np.full((30, 30), 40000, np.uint16)).save(folder / "c_16bit.png")
    Image.new("RGB", (48, 48), (200, 60, 40)).convert("CMYK").save(folder / "d_cmyk.jpg")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(folder / "e_1x1.png")
    Image.new("RGB", (4000, 4000), (90, 180, 45)).save(folder / "f_big.jpg", quality=95)
    for name, colour in (("g_palette.png", (250, 10, 10)), ("h_palette.bmp", (12, 250, 100))):
        Image.new("RGB", (20, 20), colour).convert("P", palette=Image.ADAPTIVE).save(folder / name)
    Image.new("1", (20, 20), 1).save(folder / "i_1bit.bmp")
    return {"a_gray.png": (200,) * 3, "b_rgba.png": (10, 20, 30), "c_16bit.png": (156,) * 3,
            "d_cmyk.jpg": (200, 60, 40), "e_1x1.png": (1, 2, 3), "f_big.jpg": (90, 180, 45),
            "g_palette.png": (250, 10, 10), "h_palette.bmp": (12, 250, 100),
            "i_1bit.bmp": (255,) * 3}


def test_odd_but_valid_images_decode_right(face_tree):
    colours = odd_images(face_tree / "zz_odd")
    data = open_training_data(config(face_tree, shuffle=False, aug_freq=0.0))
    assert data.skipped == [] and data.num_train == 30 + len(colours)
    got = examples(data.train_dataset())[30:]
    for (name, colour), (image, label) in zip(sorted(colours.items()), got):
        assert data.class_names[label] == "zz_odd"
        pixels = np.frombuffer(image, np.float32).reshape(-1, 3) * 128 + 127.5
        assert np.abs(pixels - colour).max() <= 4, name


@pytest.mark.parametrize("layout, words", [
    ("missing", "no such folder"), ("file", "not a folder"), ("empty", "is empty"),
    ("one", "need at least 2"), ("top_level", "top level"), ("no_images", "only 0 identities"),
])
def test_folder_errors_name_the_folder(tmp_path, layout, words):
    root = tmp_path / "faces"
    if layout == "file":
        root.write_text("x")
    elif layout in ("empty", "no_images"):
        root.mkdir()
    elif layout == "one":
        make_face_tree(root, n_ids=1)
    elif layout == "top_level":
        make_face_tree(root, n_ids=2)
        shutil.copy(next((root / sorted(p.name for p in root.iterdir())[0]).iterdir()), root)
    if layout == "no_images":
        for name in ("a", "b"):
            (root / name).mkdir()
            (root / name / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=words) as err:
        open_training_data(config(root))
    assert str(root) in str(err.value)


def test_two_input_pipelines_see_every_example_once(face_tree):
    data = open_training_data(config(face_tree, aug_freq=0.0))
    whole = Counter(examples(data.train_dataset()))
    parts = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=2)
        ds = data.train_dataset(context)
        assert ds.element_spec[0].shape.as_list() == [None, SIZE, SIZE, 3]
        assert max(len(batch[1]) for batch in ds) == 4  # per-replica batch of the global 8
        parts.append(Counter(examples(ds)))
    assert parts[0] + parts[1] == whole and not parts[0] & parts[1]


def test_cache_gives_the_same_examples(face_tree):
    plain, cached = (open_training_data(config(face_tree, aug_freq=0.0, cache=c)).train_dataset()
                     for c in (False, True))
    epoch1 = examples(cached)
    assert epoch1 == examples(plain)  # the same seeded shuffle, before or after decoding
    epoch2 = examples(cached)
    assert epoch2 != epoch1 and sorted(epoch2) == sorted(epoch1)


def test_filters_keep_identities_with_most_images(tmp_path):
    root = make_face_tree(tmp_path / "faces", n_ids=4, n_imgs=4)
    people = sorted(p for p in root.iterdir())
    for person, drop in zip(people, (3, 1, 0, 1)):
        for f in sorted(person.iterdir())[:drop]:
            f.unlink()
    data = open_training_data(config(root, max_identities=2))
    assert data.class_names == [people[1].name, people[2].name]  # 4 images, then 3 (by name)
    assert data.num_train == 7
    data = open_training_data(config(root, min_images=3))
    assert data.num_classes == 3 and data.num_train == 10


def test_valid_directory_maps_labels_by_name(face_tree, tmp_path):
    valid = make_face_tree(tmp_path / "valid", n_ids=8, n_imgs=5)  # face_tree's 6 people + 2 strangers
    for person in valid.iterdir():
        for extra in sorted(person.iterdir())[2:]:
            extra.unlink()
    shutil.rmtree(valid / sorted(p.name for p in valid.iterdir())[0])
    data = open_training_data(config(face_tree, valid_directory=str(valid), aug_freq=0.0))
    assert (data.num_train, data.num_valid) == (30, 10)
    assert sorted(p.split("/")[-1] for p, _ in data.skipped) == sorted(
        set(p.name for p in valid.iterdir()) - set(data.class_names))
    labels = Counter(lab for _, lab in examples(data.valid_dataset()))
    assert labels == Counter({i: 2 for i in range(1, 6)})

    stranger = make_face_tree(tmp_path / "strangers", n_ids=8)
    for p in sorted(stranger.iterdir())[:6]:
        shutil.rmtree(p)
    with pytest.raises(DataError, match="none of its identity folders"):
        open_training_data(config(face_tree, valid_directory=str(stranger)))


GENERATOR = '''
import numpy as np
from mfn_tf2.backend import tf


def faces(cfg, input_context):
    images = np.random.default_rng(cfg.seed).integers(0, 255, (20, 48, 40, 3), np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(20) % 4))
    if input_context:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds, 4


def endless(cfg, input_context):
    return tf.data.Dataset.range(3).repeat().map(lambda i: (tf.zeros([8, 8, 3]), i)), 3


def no_count(cfg, input_context):
    return tf.data.Dataset.range(3)
'''


def test_custom_generator(tmp_path, monkeypatch):
    (tmp_path / "my_faces.py").write_text(GENERATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = open_training_data(config("", data_generator="my_faces:faces"))
    assert (data.num_classes, data.num_train, data.num_valid) == (4, 20, 0)
    images, labels = next(iter(data.train_dataset()))
    assert images.shape == (8, SIZE, SIZE, 3) and labels.dtype == tf.int32
    assert len(examples(data.train_dataset())) == 20
    with pytest.raises(DataError, match="infinite or of unknown size"):
        open_training_data(config("", data_generator="my_faces:endless"))
    with pytest.raises(DataError, match=r"return \(dataset, num_classes\), not \w*RangeDataset"):
        open_training_data(config("", data_generator="my_faces:no_count"))
    with pytest.raises(DataError, match="cannot import"):
        open_training_data(config("", data_generator="my_faces:missing"))
