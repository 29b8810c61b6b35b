"""Pairs: the real LFW files, generated pairs, the plain format, and every bad input."""
import logging
import os
import shutil

import numpy as np
import pytest

from conftest import make_face_tree
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import labelled_examples, scan_folder, select_identities
from mfn_tf2.pipeline import open_training_data
from mfn_tf2.pairs import (PairSet, PairsError, contiguous_folds, generate_pairs, generate_pairs_file,
                           read_pairs, save_pairs)


def test_full_lfw_pairs_resolve_across_train_and_heldout(lfw_root, tmp_path):
    ps = read_pairs(lfw_root / "pairs.txt", [lfw_root / "train", lfw_root / "heldout"])
    assert len(ps) == 6000 and ps.skipped == 0 and ps.n_folds == 10
    assert np.bincount(ps.folds).tolist() == [600] * 10
    assert int(ps.labels.sum()) == 3000
    # Official order: each fold is 300 matched lines, then 300 mismatched.
    assert ps.labels[:300].all() and not ps.labels[300:600].any()
    assert all(os.path.isfile(p) for p in ps.unique_paths())
    assert ps.paths1[0].endswith(os.path.join("Abel_Pacheco", "Abel_Pacheco_0001.jpg"))
    # Saved relative to train/, heldout/ images come back through "../heldout".
    roots = [lfw_root / "train", lfw_root / "heldout"]
    save_pairs(ps, tmp_path / "plain.txt", roots)
    back = read_pairs(tmp_path / "plain.txt", roots)
    assert (back.paths1, back.paths2) == (ps.paths1, ps.paths2)
    assert np.array_equal(back.folds, ps.folds)  # 6000 pairs: the same 10 folds of 600


def test_full_lfw_pairs_against_heldout_skip_and_count(lfw_root):
    with pytest.raises(PairsError, match=r"pairs\.txt:2: unknown name 'Abel_Pacheco'"):
        read_pairs(lfw_root / "pairs.txt", lfw_root / "heldout")
    ps = read_pairs(lfw_root / "pairs.txt", lfw_root / "heldout", skip_missing=True)
    # Folds 9-10 are exactly the people of heldout/.
    assert len(ps) + ps.skipped == 6000
    assert np.bincount(ps.folds, minlength=10)[8:].tolist() == [600, 600]
    assert len(ps) == 1200


def test_shared_heldout_pairs(lfw_root):
    ps = read_pairs(lfw_root / "pairs_heldout.txt", lfw_root / "heldout")
    assert len(ps) == 1200 and ps.n_folds == 2 and ps.skipped == 0


def test_bundled_heldout_pairs(demo_data):
    ps = read_pairs(demo_data / "pairs_heldout.txt", demo_data / "heldout")
    assert len(ps) == 1200 and ps.skipped == 0
    assert np.bincount(ps.folds).tolist() == [600, 600]
    assert ps.labels.dtype == np.int32 and ps.folds.dtype == np.int32
    assert int(ps.labels.sum()) == 600
    assert ps.source == str(demo_data / "pairs_heldout.txt")
    paths = ps.unique_paths()
    assert paths == sorted(set(paths)) and all(os.path.isfile(p) for p in paths)
    first, second = ps.pair_indices()
    assert [paths[k] for k in first] == ps.paths1 and [paths[k] for k in second] == ps.paths2


def test_crlf_and_trailing_blank_lines(demo_data, tmp_path):
    text = (demo_data / "pairs_heldout.txt").read_text()
    crlf = tmp_path / "pairs_crlf.txt"
    crlf.write_bytes(text.replace("\n", "\r\n").encode() + b"\r\n\r\n  \n")
    a = read_pairs(demo_data / "pairs_heldout.txt", demo_data / "heldout")
    b = read_pairs(crlf, demo_data / "heldout")
    assert (a.paths1, a.paths2) == (b.paths1, b.paths2)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.folds, b.folds)


def _small_lfw(demo_data, tmp_path, header="1\t2", extra=(), name="pairs.txt"):
    """A small LFW-format file from real lines of the bundled pairs_heldout.txt."""
    lines = (demo_data / "pairs_heldout.txt").read_text().splitlines()
    body = lines[1:3] + lines[301:303]  # 2 matched + 2 mismatched of fold 1
    path = tmp_path / name
    path.write_text("\n".join([header, *body, *extra]) + "\n")
    return path


def test_view1_single_number_header_is_one_fold(demo_data, tmp_path):
    ps = read_pairs(_small_lfw(demo_data, tmp_path, header="2"), demo_data / "heldout")
    assert len(ps) == 4 and ps.n_folds == 1 and ps.labels.tolist() == [1, 1, 0, 0]


def test_folds_come_from_the_lfw_file(demo_data, tmp_path):
    lines = (demo_data / "pairs_heldout.txt").read_text().splitlines()
    path = tmp_path / "two.txt"
    path.write_text("\n".join(["2 1", lines[1], lines[301], lines[601], lines[901]]))
    ps = read_pairs(path, demo_data / "heldout")
    assert ps.folds.tolist() == [0, 0, 1, 1] and ps.labels.tolist() == [1, 0, 1, 0]


def _write(tmp_path, text, name="bad.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


# (file text, line in the message, words in the message); "A 1 2" style
# names are real people of data/lfw_demo/heldout.
LFW_BAD = {
    "bad header": ("ten 300\nAaron_Tippin 1 2\n", 1, "expected an LFW header"),
    "missing header, matched line first": ("Al_Gore 2 6\n", 1, "'folds n' header"),
    "missing header, mismatched line first": ("Al_Gore 2 Aaron_Tippin 1\n", 1,
                                              "missing header"),
    "two fields": ("1 1\nAl_Gore 2\nAl_Gore 2 Aaron_Tippin 1\n", 2, "got 2 fields"),
    "five fields": ("1 1\nAl_Gore 2 6\nAl_Gore 2 Aaron_Tippin 1 7\n", 3, "got 5 fields"),
    "non-integer index": ("1 1\nAl_Gore 2 six\nAl_Gore 2 Aaron_Tippin 1\n", 2,
                          "'six' is not an integer"),
    "zero index": ("1 1\nAl_Gore 0 6\nAl_Gore 2 Aaron_Tippin 1\n", 2, "'0' is not an integer"),
    "index past the images": ("1 1\nAl_Gore 2 6\nAl_Gore 2 Aaron_Tippin 9\n", 3,
                              "Aaron_Tippin has 1 images, index 9 is past them"),
    "unknown name": ("1 1\nAl_Gore 2 6\nAl_Gore 2 Nobody_Atall 1\n", 3,
                     "unknown name 'Nobody_Atall'"),
    "empty file": ("", 1, "empty pairs file"),
    "only blank lines": ("\n\r\n   \n", 1, "empty pairs file"),
    "too few lines": ("2 1\nAl_Gore 2 6\nAl_Gore 2 Aaron_Tippin 1\n", 1,
                      "announces 2 folds x 2 pairs = 4, the file has 2"),
    "fold counts": ("1 1\nAl_Gore 2 6\nAl_Gore 2 4\n", 2, "fold 1 (lines 2-3) has 2 matched"),
    "plain: two fields": ("a.jpg b.jpg 1\nc.jpg d.jpg\n", 2, "got 2 fields"),
    "plain: bad label": ("Al_Gore/Al_Gore_0002.jpg Al_Gore/Al_Gore_0006.jpg yes\n", 1,
                         "label must be 0 or 1"),
    "plain: missing file": ("Al_Gore/Al_Gore_0002.jpg Al_Gore/Al_Gore_0099.jpg 1\n", 1,
                            "missing file Al_Gore/Al_Gore_0099.jpg"),
}


@pytest.mark.parametrize("case", list(LFW_BAD))
def test_bad_inputs_name_file_and_line(demo_data, tmp_path, case):
    text, line, words = LFW_BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(PairsError) as err:
        read_pairs(path, demo_data / "heldout")
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_missing_file_inside_a_known_person(demo_data, tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(demo_data / "heldout" / "Al_Gore", root / "Al_Gore")
    shutil.copytree(demo_data / "heldout" / "Aaron_Tippin", root / "Aaron_Tippin")
    (root / "Al_Gore" / "Al_Gore_0002.jpg").unlink()
    path = _write(tmp_path, "1 1\nAl_Gore 4 6\nAl_Gore 2 Aaron_Tippin 1\n")
    with pytest.raises(PairsError, match=r"bad\.txt:3: missing file Al_Gore/Al_Gore_0002\.jpg"):
        read_pairs(path, root)
    ps = read_pairs(path, root, skip_missing=True)
    assert len(ps) == 1 and ps.skipped == 1 and ps.labels.tolist() == [1]


def test_other_extensions_and_skip_everything(demo_data, tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(demo_data / "heldout" / "Al_Gore", root / "Al_Gore")
    jpg = root / "Al_Gore" / "Al_Gore_0006.jpg"
    jpg.rename(jpg.with_suffix(".png"))  # a renamed JPEG: existence is all that is checked
    ps = read_pairs(_write(tmp_path, "1\t1\nAl_Gore\t2\t6\nAl_Gore\t2\tX_Y\t1\n"), root,
                    skip_missing=True)
    assert ps.paths2 == [str(root / "Al_Gore" / "Al_Gore_0006.png")] and ps.skipped == 1
    with pytest.raises(PairsError, match="all 1 pairs skipped"):
        read_pairs(_write(tmp_path, "a.jpg\tb.jpg\t1\n", "x.txt"), root, skip_missing=True)


def test_missing_pairs_file_and_data_directory(demo_data, tmp_path):
    with pytest.raises(PairsError, match=r"nope\.txt: pairs file not found"):
        read_pairs(tmp_path / "nope.txt", demo_data / "heldout")
    with pytest.raises(PairsError, match=r"absent: data directory not found"):
        read_pairs(demo_data / "pairs_heldout.txt", tmp_path / "absent")


def test_contiguous_folds_match_kfold_sizes():
    assert np.bincount(contiguous_folds(23)).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert contiguous_folds(6000).tolist() == np.repeat(np.arange(10), 600).tolist()
    assert contiguous_folds(3).tolist() == [0, 1, 2]


def test_generated_balanced_pairs(face_tree):
    ps = generate_pairs(face_tree, sample_type=0, repeat_times=10, seed=0)
    assert len(ps) == 6 * 5 * 2 * 2 and int(ps.labels.sum()) == len(ps) // 2
    assert ps.n_folds == 10 and ps.folds.tolist() == contiguous_folds(len(ps)).tolist()
    person = [os.path.basename(os.path.dirname(p)) for p in ps.paths1]
    other = [os.path.basename(os.path.dirname(p)) for p in ps.paths2]
    same = np.array(person) == np.array(other)
    assert np.array_equal(same, ps.labels.astype(bool))
    assert all(a != b for a, b, y in zip(ps.paths1, ps.paths2, ps.labels) if y)


def test_generated_pairs_are_reproducible_under_seed(face_tree):
    a, b = (generate_pairs(face_tree, seed=3) for _ in range(2))
    c = generate_pairs(face_tree, seed=4)
    assert (a.paths1, a.paths2) == (b.paths1, b.paths2)
    assert (a.paths1, a.paths2) != (c.paths1, c.paths2)


def test_generated_all_pairs(face_tree):
    ps = generate_pairs(face_tree, sample_type=1, num_person=3, num_sample=4, seed=1)
    assert len(ps) == 12 * 11 // 2 and int(ps.labels.sum()) == 3 * (4 * 3 // 2)
    assert len(ps.unique_paths()) == 12


def test_generate_needs_two_people(tmp_path, demo_data):
    shutil.copytree(demo_data / "heldout" / "Al_Gore", tmp_path / "one" / "Al_Gore")
    for sample_type in (0, 1):
        with pytest.raises(PairsError, match=r"one: too few people .*\(1 identity folders"):
            generate_pairs(tmp_path / "one", sample_type=sample_type)


def test_save_and_read_round_trip(face_tree, tmp_path):
    # A folder name with a space: the file is tab-separated.
    (face_tree / sorted(os.listdir(face_tree))[0]).rename(face_tree / "Jane Doe")
    ps = generate_pairs(face_tree, seed=2)
    out = tmp_path / "saved_pairs.txt"
    save_pairs(ps, out, face_tree)
    assert not os.path.isabs(out.read_text().split("\t")[0])
    back = read_pairs(out, face_tree)
    assert (back.paths1, back.paths2) == (ps.paths1, ps.paths2)
    assert np.array_equal(back.labels, ps.labels) and np.array_equal(back.folds, ps.folds)
    assert any("Jane Doe" in p for p in back.paths1 + back.paths2)


def test_a_missing_pairs_file_is_generated_and_saved(face_tree, tmp_path):
    """train's answer to a pairs_filename that does not exist (as the original Keras script)."""
    out = tmp_path / "made" / "pairs.txt"  # its folder is made too
    line = generate_pairs_file(out, face_tree, sample_type=1, num_person=3, num_sample=4, seed=1)
    assert line == (f"{out} did not exist: 66 pairs generated from {face_tree} (sample_type 1) "
                    "and saved there; later runs read them")
    back = read_pairs(out, face_tree)
    want = generate_pairs(face_tree, sample_type=1, num_person=3, num_sample=4, seed=1)
    assert (back.paths1, back.paths2, back.labels.tolist()) == (want.paths1, want.paths2, want.labels.tolist())
    with pytest.raises(PairsError, match=r"nope\.txt: pairs file not found, and no data_directory"):
        generate_pairs_file(tmp_path / "nope.txt", "")
    assert not (tmp_path / "nope.txt").exists()


def test_pairset_checks_lengths():
    with pytest.raises(PairsError, match="differ in length"):
        PairSet(["a"], ["b", "c"], [1], [0], source="x")


def _cluttered_tree(root):
    """3 people x 3 real faces, plus what copying, Macs and notebooks leave in face folders."""
    make_face_tree(root, n_ids=3, n_imgs=3)
    first = sorted(root.iterdir())[0]
    shutil.copy(sorted(first.iterdir())[0], first / ".copy.jpg")  # a dotfile that is a real image
    (first / "._AppleDouble.jpg").write_bytes(b"\x00\x05\x16\x07")
    (first / "notes.txt").write_text("taken in 2004\n")  # a visible non-image file
    shutil.copytree(first, root / ".ipynb_checkpoints" / first.name)  # a hidden folder of faces
    shutil.copytree(first, first / ".thumbnails")  # a hidden folder inside an identity
    (root / "Empty_Person").mkdir()
    return first / "notes.txt"


def test_training_and_generated_pairs_see_a_folder_alike(tmp_path, caplog):
    """The same identities and files, whatever the folder holds besides faces."""
    root = tmp_path / "faces"
    notes = _cluttered_tree(root)
    data = open_training_data(DataConfig(train_directory=str(root), image_size=32, valid_split_ratio=0.0))
    identities, _ = scan_folder(str(root))  # the listing open_training_data trains on
    trained = sorted(path for path, _, _ in labelled_examples(identities, data.class_names))
    caplog.clear()  # open_training_data warned already
    with caplog.at_level(logging.WARNING, logger="mfn_tf2.images"):
        ps = generate_pairs(root, sample_type=1, num_person=100, num_sample=100)
    paired = ps.unique_paths()  # every image of every person: sample_type 1 takes them all
    people = sorted({os.path.basename(os.path.dirname(p)) for p in paired})
    assert people == data.class_names == sorted(p.name for p in root.iterdir() if p.name[0] != ".")[:3]
    assert paired == trained and len(trained) == data.num_train == 9
    assert not any("/." in p for p in paired)
    assert data.skipped == [(str(notes), "not an image")]
    assert [r.getMessage() for r in caplog.records] == [f"left out 1 unusable file(s), e.g. {notes} (not an image)"]
    assert select_identities(identities, data.cfg) == data.class_names


def test_generated_pairs_report_a_bad_layout_as_training_does(face_tree):
    shutil.copy(next(next(face_tree.iterdir()).iterdir()), face_tree / "loose.jpg")
    with pytest.raises(PairsError, match=r"^data_directory .*faces: has files at its top level \(loose\.jpg\)"):
        generate_pairs(face_tree)
