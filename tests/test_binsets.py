"""insightface .bin verification sets, written here from the spec (pickle of (images, issame))."""
import csv
import json
import pickle

import pytest

from conftest import TINY_MODEL_FLAGS, run_cli, run_main
from insightface_files import write_bin
from mfn_tf2.pairs import read_pairs, save_pairs


def bin_from_pairs(pairs, out):
    """A .bin holding the very bytes of each pair's two files, pairs in file order."""
    images = [open(p, "rb").read() for a, b in zip(pairs.paths1, pairs.paths2) for p in (a, b)]
    return write_bin(images, pairs.labels.tolist(), out)


@pytest.fixture(scope="module")
def heldout(demo_data, tmp_path_factory):
    """pairs_heldout.txt (1,200 pairs) as a plain pairs file (10 contiguous folds) and as a .bin."""
    root = tmp_path_factory.mktemp("bins")
    pairs = read_pairs(demo_data / "pairs_heldout.txt", demo_data / "heldout")
    save_pairs(pairs, root / "heldout_plain.txt", demo_data / "heldout")
    return root, bin_from_pairs(pairs, root / "heldout.bin"), root / "heldout_plain.txt"


def evaluate_json(tmp_path, name, *args) -> dict:
    """The evaluate CLI's main in-process (test_three_sets_one_table_per_model runs the real command)."""
    out = tmp_path / f"{name}.json"
    proc = run_main("evaluate", *args, "--json", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_bin_of_heldout_pairs_scores_as_the_pairs_file(tiny_run, heldout, demo_data, tmp_path):
    weights = tiny_run[0]
    root, heldout_bin, plain = heldout
    found, out = evaluate_json(tmp_path, "bin", weights, "--bin", heldout_bin)
    assert "10 contiguous folds" in out and "| heldout | 1200 |" in out
    sets = found["verification_sets"]["models"][0]["sets"]["heldout"]
    for flip, key in (("false", "accuracy"), ("true", "accuracy_flip")):
        # like with like: the plain file is cut into the same 10 contiguous folds as a .bin
        pairs, _ = evaluate_json(tmp_path, f"pairs_{flip}", weights, "--pairs_filename", plain,
                                 "--data_directory", demo_data / "heldout", "--flip", flip)
        want = pairs["models"][0]["report"]
        assert sets[key]["n_folds"] == want["n_folds"] == 10
        assert sets[key]["accuracy"] == pytest.approx(want["accuracy"], abs=1e-12)
        assert sets[key]["accuracy_std"] == pytest.approx(want["accuracy_std"], abs=1e-12)
        assert sets[key]["auc"] == pytest.approx(want["auc"], abs=1e-6)


def test_three_sets_one_table_per_model(tiny_run, heldout, tmp_path):
    weights = tiny_run[0]
    root, heldout_bin, _ = heldout
    images, issame = pickle.load(open(heldout_bin, "rb"))
    paths = [write_bin(images[2 * a:2 * b], issame[a:b], tmp_path / f"{name}.bin")
             for name, a, b in (("lfw", 0, 400), ("cfp_fp", 400, 800), ("agedb_30", 800, 1200))]
    proc = run_cli("evaluate", weights, weights / "embedding_model", "--bin", ",".join(map(str, paths)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables = proc.stdout.split("model: ")[1:]
    assert len(tables) == 2
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
        assert [r.split(" | ")[0][2:] for r in rows[1:]] == ["lfw", "cfp_fp", "agedb_30"]
        assert all(r.split(" | ")[1] == "400" for r in rows[1:])
        assert "accuracy-flip (%)" in rows[0]


@pytest.mark.slow
def test_train_checks_bins_logs_them_and_picks_best_by_one(heldout, tmp_path):
    from conftest import make_face_tree, write_plain_pairs
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=6)
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    images, issame = pickle.load(open(heldout[1], "rb"))
    small = write_bin(images[500:700], issame[250:350], tmp_path / "agedb_30.bin")  # both kinds
    save = tmp_path / "weights"
    proc = run_cli("train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "8", "--learning_rate",
                   "0.01", "--epochs", "2", "--evaluate_epochs", "2", "--save_model_directory", save,
                   "--verification_sets", small, "--best_by", "agedb_30")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 2: agedb_30 accuracy" in proc.stdout and "accuracy-flip" in proc.stdout
    with open(save / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["agedb_30_accuracy_flip"] == "nan"  # no check after epoch 1: column kept
    assert 0.0 <= float(rows[1]["agedb_30_accuracy_flip"]) <= 1.0
    assert 0.0 <= float(rows[1]["verify_accuracy"]) <= 1.0
    assert (save / "best" / "verification.txt").read_text().startswith("epoch 2: agedb_30 accuracy-flip")
    from mfn_tf2.backend import tf
    tags = {v.tag for events in (save / "logs").rglob("events.out.tfevents*")
            for e in tf.compat.v1.train.summary_iterator(str(events)) for v in e.summary.value}
    assert {"epoch_agedb_30_accuracy", "epoch_agedb_30_accuracy_flip"} <= tags
    # only .bin sets: data_directory and pairs 'none'
    only = run_cli("train", faces, "none", "none", *TINY_MODEL_FLAGS, "--batch_size", "8", "--epochs", "1",
                   "--save_model_directory", tmp_path / "only", "--verification_sets", small)
    assert only.returncode == 0, only.stderr[-3000:]
    assert "agedb_30 accuracy" in only.stdout and "verification accuracy" not in only.stdout


class _Boom:
    def __reduce__(self):
        return (print, ("a .bin ran code",))


@pytest.mark.parametrize("row", ["missing", "not_pickle", "code", "counts", "one_kind", "bad_image", "best_by",
                                 "not_bin"])
def test_bad_bin_sets(tiny_run, tmp_path, row):
    weights, _, _ = tiny_run
    path = tmp_path / "x.bin"
    expected, code = {
        "missing": (f"error: {path}: verification set not found (check --verification_sets)", 1),
        "not_pickle": (f"error: {path}: not an insightface .bin verification set", 1),
        "code": (f"error: {path}: not an insightface .bin verification set", 1),
        "counts": (f"error: {path}: 3 images for 2 pairs; a .bin holds two images per pair", 1),
        "one_kind": (f"error: {path}: all 2 pairs are same-person pairs; a verification set needs both kinds", 1),
        "bad_image": (f"error: {path}: image 0 cannot be decoded (", 1),
        "best_by": ("--best_by 'agedb': choose one of pairs, x", 2),
        "not_bin": ("--verification_sets x.txt: give insightface .bin files", 2),
    }[row]
    if row == "not_pickle":
        path.write_text("hello")
    elif row == "code":
        path.write_bytes(pickle.dumps(([_Boom()], [True])))
    elif row == "counts":
        write_bin([b"a", b"b", b"c"], [True, False], path)
    elif row == "one_kind":
        write_bin([b"a", b"b", b"c", b"d"], [True, True], path)
    elif row == "bad_image":
        write_bin([b"not an image"] * 4, [True, False], path)
    extra = {"best_by": ["--best_by", "agedb"], "not_bin": []}.get(row, [])
    target = "x.txt" if row == "not_bin" else path
    proc = run_main("evaluate", weights, "--bin", target, *extra)  # refused before any model runs: in-process
    assert proc.returncode == code
    assert expected in proc.stderr.strip().splitlines()[-1]
    assert "a .bin ran code" not in proc.stdout


def test_nothing_to_check_is_a_flag_error(tmp_path):
    proc = run_main("train", tmp_path, "none", "none")  # a parsing rule: in-process
    assert proc.returncode == 2
    assert "data_directory none: give pairs to check, or --verification_sets" in proc.stderr.splitlines()[-1]
    proc = run_main("evaluate", tmp_path)
    assert proc.returncode == 2
    assert "give --pairs_filename/--data_directory, or --bin" in proc.stderr.splitlines()[-1]
