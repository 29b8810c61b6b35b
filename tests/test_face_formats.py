"""A face set stored as PGM with stray files, as Cropped Extended Yale B ships.

The tree is built from the bundled faces: ``yaleB01/yaleB01_P00A+000E+00.pgm``
plus the ``.info``, ``WS_FTP.LOG`` and ``DEADJOE`` files that set's folders hold.
It trains, is evaluated on generated pairs (``--sample_type 1``, the same pairs
for the same ``--seed``), and every stray file is counted.
"""
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_MODEL_FLAGS, make_face_tree, run_cli
from mfn_tf2.exporting import calibration_images

N_IDS, N_IMGS = 4, 5


def make_yale_tree(root, scratch) -> int:
    """Writes the PGM tree into ``root``; returns the number of stray (non-image) files."""
    strays = 0
    for i, person in enumerate(sorted(make_face_tree(scratch, n_ids=N_IDS, n_imgs=N_IMGS).iterdir()), 1):
        name = f"yaleB{i:02d}"
        (root / name).mkdir(parents=True)
        for k, face in enumerate(sorted(person.iterdir())):
            Image.open(face).convert("L").save(root / name / f"{name}_P00A+{5 * k:03d}E+00.pgm")
        (root / name / f"{name}_P00.info").write_text("".join(f"{name}_P00A+{5 * k:03d}E+00.pgm\n"
                                                               for k in range(N_IMGS)))
        strays += 1
    (root / "yaleB01" / "WS_FTP.LOG").write_text("2001.04.23 17:50 B C:\\yale ftp.example.edu\n")
    (root / "yaleB02" / "DEADJOE").write_text("\n*** Modified files in JOE when it aborted\n")
    return strays + 2


@pytest.fixture(scope="module")
def yale(tmp_path_factory):
    root = tmp_path_factory.mktemp("yale")
    strays = make_yale_tree(root / "CroppedYale", root / "scratch")
    return root / "CroppedYale", strays


@pytest.fixture(scope="module")
def yale_run(yale, tmp_path_factory):
    """The PGM tree trained on, checked on pairs generated from itself."""
    tree, strays = yale
    weights = tmp_path_factory.mktemp("yale_weights") / "w"
    proc = run_cli("train", tree, tree, "none", *TINY_MODEL_FLAGS, "--sample_type", "1",
                   "--num_person", N_IDS, "--num_sample", N_IMGS, "--batch_size", "8", "--epochs", "1",
                   "--valid_split_ratio", "0", "--evaluate_epochs", "1", "--save_model_directory", weights)
    return proc, weights


@pytest.mark.slow
def test_pgm_tree_trains_and_counts_strays(yale, yale_run):
    (_, strays), (proc, _) = yale, yale_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{N_IDS} identities, {N_IDS * N_IMGS} training images, {strays} files skipped" in proc.stdout
    assert "WS_FTP.LOG (not an image)" in proc.stderr or "DEADJOE (not an image)" in proc.stderr
    assert "done: 1 epochs" in proc.stdout


@pytest.mark.slow
def test_pgm_tree_evaluates_with_the_same_pairs_for_the_same_seed(yale, yale_run, tmp_path):
    """evaluate generates pairs from the tree and saves them; the generator gives the same pairs
    again for the same seed and others for another."""
    from mfn_tf2.pairs import generate_pairs, save_pairs
    (tree, strays), (_, weights) = yale, yale_run
    sampling = dict(sample_type=1, num_person=3, num_sample=3)
    proc = run_cli("evaluate", weights, "--data_directory", tree, "--sample_type", "1", "--num_person", 3,
                   "--num_sample", 3, "--seed", 3, "--save_pairs", tmp_path / "a.txt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"left out {strays} unusable file(s)" in proc.stderr
    for name, seed in (("b", 3), ("c", 4)):
        save_pairs(generate_pairs(tree, seed=seed, **sampling), tmp_path / f"{name}.txt", tree)
    runs = {name: (tmp_path / f"{name}.txt").read_text() for name in "abc"}
    # 3 people x 3 images: every pair among 9 images, each a PGM of the tree.
    lines = runs["a"].splitlines()
    assert len(lines) == 9 * 8 // 2 and all(".pgm\t" in line for line in lines)
    assert runs["a"] == runs["b"] and runs["a"] != runs["c"]


def test_pack_reads_pgm(yale, tmp_path):
    tree, strays = yale
    proc = run_cli("data", "pack", tree, tmp_path / "packed", "--shards", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"packed {N_IDS * N_IMGS} images of {N_IDS} identities" in proc.stdout
    assert f"{strays} files skipped" in proc.stdout


def test_calibration_reads_pgm(yale):
    tree, _ = yale
    x = calibration_images(str(tree), 32, 8)
    assert x.shape == (8, 32, 32, 3) and np.isfinite(x).all() and x.std() > 0.1
