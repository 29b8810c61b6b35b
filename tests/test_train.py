"""python -m mfn_tf2.train on real faces: outputs, resume, SIGKILL, two replicas, refusals."""
import csv
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY_MODEL_FLAGS, make_face_tree, run_cli, train_tiny, write_plain_pairs


def _history_epochs(save_dir):
    with open(save_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# What TensorFlow may print on the normal path of a training run: nothing. Its Python warnings, its C++
# log lines ("I0000 00:00:... port.cc:153] oneDNN custom operations ...") and absl's start-up line.
_TF_LINE = re.compile(r"WARNING:tensorflow:|[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl")


def _quiet(proc) -> None:
    """Asserts a run printed no TensorFlow warning or log line, and no NaN column in its progress line."""
    assert not [line for line in proc.stderr.splitlines() if _TF_LINE.match(line)], proc.stderr[-3000:]
    assert not re.search(r"\w+: nan\b", proc.stdout), proc.stdout[-3000:]


def test_train_writes_everything_and_verifies(tiny_run):
    save_dir, _, _ = tiny_run
    stdout = (save_dir.parent / "stdout.txt").read_text()
    # 42 training faces at batch 8: 5 steps an epoch; the first traces, the next 4 are timed, then it speaks.
    assert re.search(r"\d+ ms per step on this machine: 5 more steps \(2 epoch\(s\) from epoch 1\) take about", stdout)
    assert "42 training images, 6 validation; 1 replica(s)" in stdout and "done: 2 epochs" in stdout
    for name in ("run.json", "checkpoint", "final.weights.h5", "embedding_model/saved_model.pb",
                 "best/saved_model.pb", "history.csv"):
        assert (save_dir / name).exists(), name
    assert _history_epochs(save_dir) == [0, 1]
    with open(save_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(0.0 <= float(r["verify_accuracy"]) <= 1.0 for r in rows)
    assert all(float(r["learning_rate"]) > 0 for r in rows)
    assert any((save_dir / "logs").rglob("events.out.tfevents*"))


def test_resume_continues_from_last_epoch_and_keeps_a_better_best(tiny_run, tmp_path):
    """A finished 2-epoch run given --epochs 3 trains epoch 3 alone; its check does not beat the score
    best/ holds (read back from its verification.txt), so best/ is kept byte for byte."""
    weights, faces, pairs = tiny_run
    save = shutil.copytree(weights, tmp_path / "w")
    # best/ holds a score no check can beat: whatever the resumed run scores is worse.
    (save / "best" / "verification.txt").write_text("epoch 2: pairs accuracy 1.0000\n")
    before = {p.relative_to(save): p.read_bytes() for p in (save / "best").rglob("*") if p.is_file()}
    again = train_tiny(save, faces, pairs, epochs=3)
    assert again.returncode == 0, again.stderr[-2000:]
    _quiet(again)
    assert "resuming from epoch 2" in again.stdout
    assert _history_epochs(save) == [0, 1, 2]
    assert "epoch 3: verification accuracy" in again.stdout  # the check ran
    assert "best/ holds epoch 2: pairs accuracy 1.0000; a check must beat it" in again.stdout
    assert "best/ now holds" not in again.stdout
    after = {p.relative_to(save): p.read_bytes() for p in (save / "best").rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_sigkill_then_resume_at_saved_epoch(tmp_path):
    from mfn_tf2.backend import tf
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=5)
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    save = tmp_path / "w"
    cmd = [sys.executable, "-m", "mfn_tf2.train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "8",
           "--epochs", "500", "--checkpoint_epochs", "1", "--evaluate_epochs", "1000",
           "--save_model_directory", save]
    proc = subprocess.Popen(list(map(str, cmd)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(save.glob("ckpt-*.index"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = tf.train.latest_checkpoint(str(save))
    assert latest, "no checkpoint before the kill"
    saved_epoch = int(tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    assert saved_epoch >= 1
    from mfn_tf2.embedders import FeatureExtractor
    probe = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    before = FeatureExtractor(str(save)).infer(probe)
    again = train_tiny(save, faces, pairs, "--evaluate_epochs", "1000", epochs=saved_epoch)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from epoch {saved_epoch}" in again.stdout
    # Nothing left to train: the restored weights are the ones saved before the kill.
    np.testing.assert_allclose(FeatureExtractor(str(save)).infer(probe), before, atol=1e-5)


@pytest.mark.slow
def test_time_budget_and_generated_pairs(tmp_path):
    """--max_minutes measures the first steps, then fixes the schedule's last step (here --epochs' own: a
    generous budget); two replicas agree on it. A budget that ends the schedule early: TimeBudget's example.
    A pairs_filename that does not exist is generated from data_directory, saved there and used.
    Two logical CPUs: two replicas (MirroredStrategy) on one machine."""
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=5)
    pairs = tmp_path / "made" / "pairs.txt"
    proc = train_tiny(tmp_path / "w", faces, pairs, "--max_minutes", "30", "--logical_cpus", "2",
                      "--evaluate_epochs", "3", "--repeat_times", "2", epochs=4)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 replica(s)" in proc.stdout
    _quiet(proc)  # epochs 1, 2 and 4 have no check: no NaN columns for them
    # sample_type 0, 2 rounds: a same and a different pair per person and round.
    assert f"{pairs} did not exist: 24 pairs generated from {faces} (sample_type 0) and saved there" in proc.stdout
    assert len(pairs.read_text().splitlines()) == 24
    assert len(re.findall(r"verification accuracy .* \(24 pairs\)", proc.stdout)) == 2  # epochs 3 and 4
    # 30 faces at batch 8: 3 steps an epoch, 12 in all; the first traces, the next 10 are timed.
    assert re.search(r"\d+ ms per step on this machine: \d+ more steps fit in --max_minutes 30; "
                     r"the learning-rate schedule keeps its 12 steps: --epochs ends before the budget", proc.stdout)
    assert "ms per step on this machine:" in proc.stdout and "take about" not in proc.stdout  # one estimate
    assert "done: 4 epochs" in proc.stdout and "stopped" not in proc.stdout


def test_other_configuration_is_refused(tiny_run, tmp_path):
    save_dir, faces, pairs = tiny_run
    proc = run_cli("train", faces, faces, pairs, "--image_size", "32", "--width", "0.25",
                   "--embedding_dim", "64", "--epochs", "1", "--save_model_directory", save_dir)
    assert proc.returncode != 0
    assert "another configuration" in proc.stderr and "embedding_dim" in proc.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_run, tmp_path):
    from mfn_tf2.embedders import FeatureExtractor
    weights, faces, pairs = tiny_run
    shutil.copytree(weights, tmp_path / "w")  # a good run: its checkpoints are the last good ones
    proc = train_tiny(tmp_path / "w", faces, pairs, "--learning_rate", "1e30", epochs=4)
    assert proc.returncode != 0
    assert "error: loss became" in proc.stderr
    probe = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    assert np.isfinite(FeatureExtractor(str(tmp_path / "w")).infer(probe)).all()


def test_help_documents_every_flag():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    assert proc.stderr == ""  # none of TensorFlow's start-up lines
    for flag in ("--batch_size", "--aug_freq", "--expansion_ratio", "--loss_margin", "--pretrained_model",
                 "--checkpoint_epochs", "--sample_type", "--far_target", "--gpu", "--mixed_precision",
                 "--optimizer", "--warmup_epochs", "--lr_schedule", "--seed", "--log_dir"):
        assert flag in proc.stdout, flag


# A module that dies while TensorFlow loads (shadowing tf_keras, imported right after TensorFlow):
# what it printed reaches the terminal although TensorFlow's start-up lines are filtered.
_CRASH = """import os
os.write(2, b"F0000 00:00:1.000000  1 loader.cc:1] fatal while loading\\nplain line before the crash\\n")
os.abort()
"""


def test_a_crash_while_tensorflow_loads_shows_its_message(tmp_path):
    (tmp_path / "tf_keras").mkdir()
    (tmp_path / "tf_keras" / "__init__.py").write_text(_CRASH)
    proc = run_cli("train", "--help", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "loader.cc:1] fatal while loading" in proc.stderr and "plain line before the crash" in proc.stderr
    (tmp_path / "tf_keras" / "__init__.py").write_text("raise ImportError('tf_keras is broken here')\n")
    proc = run_cli("train", "--help", env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1 and "ImportError: tf_keras is broken here" in proc.stderr
