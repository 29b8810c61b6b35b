"""Several workers on 127.0.0.1: MultiWorkerMirroredStrategy training and exactly-once data sharding."""
import collections
import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import REPO, TINY_MODEL_FLAGS, make_face_tree, run_cli, write_plain_pairs
from insightface_files import tree_records, write_rec

pytestmark = pytest.mark.slow  # several workers train or read together


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(args, n=2, cwd=REPO):
    """Starts ``n`` processes running ``args``, each with its own TF_CONFIG task index."""
    workers = [f"127.0.0.1:{p}" for p in _free_ports(n)]
    procs = []
    for index in range(n):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                     "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, *map(str, args)], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [(p, *p.communicate(timeout=900)) for p in procs]


def test_two_workers_train_together_and_only_chief_writes(tmp_path):
    """Two workers train on an insightface .rec folder (the counts of the folder it was written from) and
    verify on that folder's pairs; the chief alone logs, verifies and writes."""
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=6)
    rec = write_rec(tree_records(faces), tmp_path / "rec")
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    save = tmp_path / "weights"
    results = _start_workers(["-m", "mfn_tf2.train", rec, faces, pairs, *TINY_MODEL_FLAGS,
                              "--batch_size", "8", "--learning_rate", "0.01", "--epochs", "1",
                              "--checkpoint_epochs", "1", "--evaluate_epochs", "1",
                              "--strategy", "multi_worker", "--save_model_directory", save])
    for proc, out, err in results:
        assert proc.returncode == 0, err[-3000:]
    chief_out = results[0][1]
    assert "6 identities, 32 training images, 4 validation; 2 replica(s)" in chief_out
    assert "verification accuracy" in chief_out
    assert "verification accuracy" not in results[1][1]  # only the chief logs and verifies
    assert (save / "embedding_model" / "saved_model.pb").exists() and (save / "checkpoint").exists()
    assert (save / "best" / "saved_model.pb").exists()  # the chief keeps the best backbone
    assert not list(save.glob(".worker-*")), "a worker's scratch copy was left behind"
    assert len((save / "history.csv").read_text().splitlines()) == 2  # a header and the one epoch


def test_shards_seen_exactly_once_per_epoch_across_two_workers(tmp_path):
    from mfn_tf2.config import DataConfig
    from mfn_tf2.pipeline import open_training_data
    faces = make_face_tree(tmp_path / "faces", n_ids=8, n_imgs=4)  # 32 images, 4 shards of 8
    proc = run_cli("data", "pack", faces, tmp_path / "shards", "--shards", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs = [tmp_path / "w0.json", tmp_path / "w1.json"]
    script = REPO / "tests" / "mw_data_worker.py"
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index, out in enumerate(outs):
        env = dict(os.environ, PYTHONPATH=str(REPO),
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "shards"), str(out), "8"],
                                      cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    seen = collections.Counter(h for out in outs for h in json.loads(out.read_text()))
    data = open_training_data(DataConfig(train_directory=str(tmp_path / "shards"), batch_size=8,
                                         aug_freq=0.0, image_size=32, shuffle=False))
    everything = collections.Counter(hashlib.sha1(im.tobytes()).hexdigest()
                                     for images, _ in data.train_dataset() for im in images.numpy())
    assert sum(everything.values()) == 32
    assert seen == everything
