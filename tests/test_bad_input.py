"""Bad input never crashes deep inside TensorFlow and never loses work.

One row per kind of bad input. A row runs the CLI a user would run and asserts
the exit code, that the one ``error:`` line names the culprit (file, line or
flag), and that nothing an earlier run wrote was lost. Rows that training,
permissions, locks or kills are about run ``python -m mfn_tf2.<cli>`` in a
subprocess; rows refused by ``evaluate`` or ``export`` before any work run the
CLI's own ``main`` in-process (``run_main``: the same code and output, and an
exception that escapes it fails the test), without a TensorFlow start per row.
``FeatureExtractor.infer`` rows call the API in-process. Interrupted runs are
killed with SIGKILL at a seeded random moment inside the write they interrupt.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_DATA, REPO, TINY_MODEL_FLAGS, make_face_tree, run_cli, run_main, write_plain_pairs

SIZE = 32  # the tiny model's input side (TINY_MODEL_FLAGS)


def error_line(proc) -> str:
    """The last stderr line: the one a user reads."""
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def command(module: str, *args) -> list[str]:
    return [sys.executable, "-m", f"mfn_tf2.{module}", *map(str, args)]


def start(log, *args) -> subprocess.Popen:
    """Starts ``python -m mfn_tf2.<args>`` in the background; stderr goes to the file ``log``
    (a pipe nobody reads would fill and stall the run)."""
    with open(log, "w") as err:
        return subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)


def kill_when(proc, log, ready, rng: random.Random, timeout: float = 300, jitter: float = 0.5) -> None:
    """SIGKILLs ``proc`` a random moment (0..jitter s) after ``ready()`` first holds.

    Fails the test when the process ends before that (nothing was interrupted).
    """
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point: {log.read_text()[-2000:]}"
        assert time.monotonic() < end, "kill point never reached"
        time.sleep(0.02)
    time.sleep(rng.uniform(0, jitter))
    assert proc.poll() is None, "finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """(faces, pairs): a small readable identity tree and plain pairs over it."""
    root = tmp_path_factory.mktemp("clean")
    faces = make_face_tree(root / "faces", n_ids=6, n_imgs=5)
    return faces, write_plain_pairs(faces, root / "pairs.txt", 12)


@pytest.fixture(scope="module")
def tflite_bytes():
    """{"embedding": a tiny backbone's fp32 .tflite, "feature_map": a rank-4-output one,
    "two_outputs": a feature map and an embedding (of a small conv net: a backbone takes
    ~15 s to convert)}."""
    from mfn_tf2.backend import keras
    from mfn_tf2.config import ModelConfig
    from mfn_tf2.backbones import build_backbone
    from mfn_tf2.tflite import convert
    keras.utils.set_random_seed(0)
    backbone = build_backbone(ModelConfig(image_size=SIZE, width=0.25, embedding_dim=32))
    image = keras.Input((SIZE, SIZE, 3))
    feature_map = keras.Model(image, keras.layers.Conv2D(8, 3)(image))
    features = keras.layers.Conv2D(8, 3, strides=2)(image)
    embedding = keras.layers.Dense(32)(keras.layers.GlobalAveragePooling2D()(features))
    both = keras.Model(image, [keras.layers.Conv2D(8, 3)(image), embedding])
    return {"embedding": convert(backbone, "fp32"), "feature_map": convert(feature_map, "fp32"),
            "two_outputs": convert(both, "fp32")}


# ---------------------------------------------------------------------------------------------
# Broken files inside a training folder: skipped and counted, or decoded; training goes on.

def add_broken_files(person) -> list[str]:
    """Writes every odd kind of file into one identity folder; returns the names to be skipped."""
    face = Image.open(sorted(person.iterdir())[0]).convert("RGB")
    good = sorted(person.iterdir())[0].read_bytes()
    (person / "truncated.jpg").write_bytes(good[:len(good) // 2])
    (person / "zero_bytes.jpg").write_bytes(b"")
    (person / "text.jpg").write_text("this is not an image\n")
    gray16 = (np.asarray(face.convert("L"), np.uint16) * 257)
    Image.fromarray(gray16).save(person / "gray16.png")
    face.convert("CMYK").save(person / "cmyk.jpg")
    face.resize((1, 1)).save(person / "one_pixel.jpg")
    # 10000 x 10000 stays fast: PIL probes the header only, TensorFlow decodes it in ~1 s.
    face.resize((10000, 10000), Image.BILINEAR).save(person / "huge.jpg", quality=70)
    return ["truncated.jpg", "zero_bytes.jpg", "text.jpg"]


@pytest.mark.slow
def test_train_skips_and_counts_broken_files(tmp_path, clean):
    faces = make_face_tree(tmp_path / "faces", n_ids=4, n_imgs=4)
    person = sorted(faces.iterdir())[0]
    skipped = add_broken_files(person)
    assert Image.open(person / "gray16.png").mode.startswith("I")  # really 16-bit
    proc = run_cli("train", faces, *clean, *TINY_MODEL_FLAGS, "--batch_size", "8", "--epochs", "1",
                   "--valid_split_ratio", "0", "--evaluate_epochs", "1",
                   "--save_model_directory", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 4 x 4 faces + gray16, cmyk, one_pixel, huge; the 3 unreadable ones counted.
    assert "4 identities, 20 training images, 3 files skipped" in proc.stdout
    assert all(name in proc.stderr for name in skipped)
    assert "done: 1 epochs" in proc.stdout


# ---------------------------------------------------------------------------------------------
# Training folder layout: a clear error before any work starts.

def _one_identity(root):
    make_face_tree(root, n_ids=1)


def _top_level_files(root):
    make_face_tree(root, n_ids=2)
    shutil.copy(next(next(root.iterdir()).iterdir()), root / "loose.jpg")


FOLDER_ROWS = {
    "missing": (lambda root: None, "no such folder"),
    "empty": (lambda root: root.mkdir(), "the folder is empty"),
    "one identity": (_one_identity, "1 identity folder(s), need at least 2"),
    "files at the top level": (_top_level_files, "has files at its top level (loose.jpg)"),
    "unreadable": (lambda root: (make_face_tree(root, n_ids=2), root.chmod(0)), "permission denied"),
}


@pytest.mark.parametrize("row", FOLDER_ROWS)
def test_training_folder_errors(tmp_path, clean, row):
    make, words = FOLDER_ROWS[row]
    root = tmp_path / "train"
    make(root)
    # Root reads anything: drop the capabilities that let it (setpriv, util-linux).
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run([*as_user, *command("train", root, *clean, *TINY_MODEL_FLAGS,
                                                  "--save_model_directory", tmp_path / "w")],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
    finally:
        if root.exists():
            root.chmod(0o755)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc).startswith(f"error: --train_directory {root}: {words}"), error_line(proc)
    assert not (tmp_path / "w" / "run.json").exists()  # stopped before any work


# ---------------------------------------------------------------------------------------------
# Pairs files, through the evaluate CLI: "<file>:<line>: ..." or handled.

def lfw_lines() -> list[str]:
    """A small LFW pairs.txt over data/lfw_demo/heldout: 2 folds x (2 matched + 2 mismatched)."""
    lines = (DEMO_DATA / "pairs_heldout.txt").read_text().splitlines()
    return ["2\t2"] + [lines[k] for k in (1, 2, 301, 302, 601, 602, 901, 902)]


def _edit(no: int, change):
    """A row that rewrites line ``no`` (1-based) of the LFW file."""
    def make(lines):
        fields = lines[no - 1].split("\t")
        lines[no - 1] = "\t".join(change(fields))
        return "\n".join(lines) + "\n"
    return make


PAIRS_ROWS = {
    # row: (text of the file from lfw_lines(), None for no file; the error's "<file>:" suffix and words)
    "wrong header": (_edit(1, lambda f: ["2", "two"]), ":1: expected an LFW header"),
    "header counts": (_edit(1, lambda f: ["2", "3"]), ":1: header '2 3' announces 2 folds x 6 pairs"),
    "2 fields": (_edit(2, lambda f: f[:2]), ":2: expected 'name i j' or 'name1 i name2 j', got 2 fields"),
    "5 fields": (_edit(4, lambda f: f + ["3"]), ":4: expected 'name i j' or 'name1 i name2 j', got 5 fields"),
    "non-integer index": (_edit(3, lambda f: [f[0], "first", f[2]]), ":3: image index 'first' is not an integer"),
    "index past the images": (_edit(3, lambda f: [f[0], f[1], "99"]), ":3: {name} has"),
    "unknown name": (_edit(4, lambda f: ["Nobody_Known"] + f[1:]), ":4: unknown name 'Nobody_Known'"),
    "missing image": (lambda lines: "nobody/x.jpg\tnobody/y.jpg\t1\n", ":1: missing file nobody/x.jpg"),
    "missing pairs file": (None, ": pairs file not found"),
    "empty file": (lambda lines: "", ":1: empty pairs file"),
    "CRLF line endings": (lambda lines: "\r\n".join(lines) + "\r\n", None),
    "trailing blank lines": (lambda lines: "\n".join(lines) + "\n\n  \n\t\n", None),
}


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory, tflite_bytes):
    path = tmp_path_factory.mktemp("fp32") / "model_fp32.tflite"
    path.write_bytes(tflite_bytes["embedding"])
    return path


@pytest.mark.parametrize("row", PAIRS_ROWS)
def test_pairs_file(tmp_path, fp32_model, row):
    make, expected = PAIRS_ROWS[row]
    lines = lfw_lines()
    pairs = tmp_path / "pairs.txt"
    if make is not None:
        pairs.write_bytes(make(lines).encode())
    proc = run_main("evaluate", fp32_model, "--pairs_filename", pairs, "--data_directory", DEMO_DATA / "heldout")
    if expected is None:  # handled: the 8 pairs are read and scored
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"8 pairs from {pairs}" in proc.stdout
        return
    expected = expected.format(name=lines[2].split("\t")[0])
    assert proc.returncode == 1
    assert error_line(proc).startswith(f"error: {pairs}{expected}"), error_line(proc)


# ---------------------------------------------------------------------------------------------
# Model paths: evaluate (and export for a missing path / no model).

def _other_architecture(tmp_path, tflite, request):
    """A copy of the tiny run whose run.json claims the mbf architecture."""
    save_dir = request.getfixturevalue("tiny_run")[0]
    copy = shutil.copytree(save_dir, tmp_path / "other_arch")
    run = json.loads((copy / "run.json").read_text())
    run["model"]["arch"] = "mbf"
    (copy / "run.json").write_text(json.dumps(run))
    return copy


def _write(name: str, data):
    def make(tmp_path, tflite, request):
        (tmp_path / name).write_bytes(data(tflite) if callable(data) else data)
        return tmp_path / name
    return make


MODEL_ROWS = {
    "missing": (lambda tmp_path, tflite, request: tmp_path / "nope.tflite", "no such file or folder"),
    "folder without a model": (lambda tmp_path, tflite, request: (tmp_path / "empty").mkdir() or tmp_path / "empty",
                               "not a model"),
    "truncated tflite": (_write("cut.tflite", lambda t: t["embedding"][:len(t["embedding"]) // 2]),
                         "cannot load TFLite model"),
    "corrupt tflite": (_write("noise.tflite", lambda t: np.random.default_rng(0).bytes(len(t["embedding"]))),
                       "cannot load TFLite model"),
    "text file": (_write("notes.txt", b"weights are in the other folder\n"), "cannot load TFLite model"),
    "output not an embedding": (_write("feature_map.tflite", lambda t: t["feature_map"]),
                                "is not an embedding (batch, D)"),
    "checkpoint of another architecture": (_other_architecture, "does not fit the saved architecture"),
    "SavedModel with two inputs": (lambda tmp_path, tflite, request: _saved_model(
        tmp_path, [(None, SIZE, SIZE, 3), (None, SIZE, SIZE, 3)]), "the model takes 2 inputs ('a', 'b')"),
    "SavedModel of variable image size": (lambda tmp_path, tflite, request: _saved_model(
        tmp_path, [(None, None, None, 3)]), "input 'a' has shape [None, None, None, 3]: the image size is not fixed"),
}


def _saved_model(tmp_path, shapes):
    """A SavedModel whose serving_default takes float images of ``shapes`` (inputs a, b, ...)."""
    from mfn_tf2.backend import tf
    names = "ab"[:len(shapes)]
    specs = [tf.TensorSpec(shape, tf.float32, name=n) for n, shape in zip(names, shapes)]
    module = tf.Module()
    module.serve = tf.function(lambda *images: {"embedding": tf.reduce_mean(images[0], axis=[1, 2])},
                               input_signature=specs)
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    return tmp_path / "sm"


@pytest.mark.parametrize("row", [pytest.param(row, marks=pytest.mark.slow) if make is _other_architecture else row
                                 for row, (make, _) in MODEL_ROWS.items()])  # that row needs the tiny run
def test_evaluate_model_path(tmp_path, clean, tflite_bytes, request, row):
    make, words = MODEL_ROWS[row]
    model = make(tmp_path, tflite_bytes, request)
    proc = run_main("evaluate", model, "--pairs_filename", clean[1], "--data_directory", clean[0])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc).startswith(f"error: {model}") and words in error_line(proc), error_line(proc)


def _two_output_indices(path):
    from ai_edge_litert.interpreter import Interpreter
    ranks = [len(d["shape"]) for d in Interpreter(model_path=str(path)).get_output_details()]
    return ranks.index(4), ranks.index(2)


@pytest.mark.parametrize("row", ["no such output", "not an embedding"])
def test_evaluate_output_choice(tmp_path, clean, tflite_bytes, row):
    model = tmp_path / "two_outputs.tflite"
    model.write_bytes(tflite_bytes["two_outputs"])
    feature_map = _two_output_indices(model)[0]
    wanted, words = {"no such output": ("9", "--output 9: no such output (outputs: "),
                     "not an embedding": (str(feature_map), "is not an embedding (batch, D)")}[row]
    proc = run_main("evaluate", model, "--pairs_filename", clean[1], "--data_directory", clean[0], "--output", wanted)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc).startswith(f"error: {model}: ") and words in error_line(proc), error_line(proc)


@pytest.mark.parametrize("row", ["missing", "folder without a model"])
def test_export_model_path(tmp_path, clean, row):
    model = tmp_path / "nope" if row == "missing" else tmp_path
    faces, pairs = clean
    proc = run_main("export", model, "--out", tmp_path / "out", "--formats", "fp32", "--pairs_filename", pairs,
                   "--data_directory", faces, "--representative_dir", faces)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc) == {"missing": f"error: {model}: no such file or folder",
                                "folder without a model": f"error: {model}: not a training directory (run.json) "
                                                          "nor a SavedModel (saved_model.pb)"}[row]


# ---------------------------------------------------------------------------------------------
# Flags: refused while parsing (exit 2, the flag named), before any file is written.

FLAG_ROWS = {
    # row: (cli, flag, value, exit code, the error after the flag and value)
    "batch size 0": ("train", "--batch_size", "0", 2, "--batch_size 0: must be a positive integer"),
    "negative batch size": ("train", "--batch_size", "-8", 2, "--batch_size -8: must be a positive integer"),
    "eval batch size 0": ("evaluate", "--batch_size", "0", 2, "--batch_size 0: must be a positive integer"),
    "aug_freq above 1": ("train", "--aug_freq", "1.5", 2, "--aug_freq 1.5: must be in [0, 1]"),
    "aug_freq below 0": ("train", "--aug_freq", "-0.1", 2, "--aug_freq -0.1: must be in [0, 1]"),
    "image_size too small": ("train", "--image_size", "16", 2,
                             "--image_size 16: MobileFaceNet needs a multiple of 16, at least 32"),
    "far_target 0": ("evaluate", "--far_target", "0", 2, "--far_target 0.0: each false accept rate must be in (0, 1)"),
    "far_target above 1": ("evaluate", "--far_target", "1e-3,1.5", 2,
                           "--far_target 0.001,1.5: each false accept rate must be in (0, 1)"),
    "gpu id not a number": ("train", "--gpu", "first", 2, "--gpu 'first': give GPU ids such as 0 or 0,1"),
    # Whether GPU 7 exists needs TensorFlow's device list: checked first thing in the run.
    "unknown gpu id": ("train", "--gpu", "7", 1, "--gpu '7': no GPU 7 on this machine"),
    "negative checkpoint_steps": ("train", "--checkpoint_steps", "-1", 2,
                                  "--checkpoint_steps -1: must be 0 (off) or more"),
    "valid_split_ratio 1": ("train", "--valid_split_ratio", "1", 2, "--valid_split_ratio 1.0: must be in [0, 1)"),
    "epochs 0": ("train", "--epochs", "0", 2, "--epochs 0: must be a positive integer"),
    "qat_epochs 0": ("export", "--qat_epochs", "0", 2, "--qat_epochs 0.0: must be positive"),
    "unknown format": ("export", "--formats", "fp32,onnx", 2,
                       "--formats fp32,onnx: choose from saved_model,fp32,fp16,dynamic,int8,qat_int8"),
    # The app embeds one image and uses the float model's threshold: export verifies the same way.
    "export --flip": ("export", "--flip", "true", 2, "unrecognized arguments: --flip true"),
    "android assets without an app model": ("export", "--android_assets", "assets", 2,
                                            "--android_assets assets: the app ships the int8 or fp16 model"),
}


@pytest.mark.parametrize("row", FLAG_ROWS)
def test_bad_flag(tmp_path, clean, row):
    cli, flag, value, code, words = FLAG_ROWS[row]
    faces, pairs = clean
    out = tmp_path / "out"
    positional = {"train": (faces, faces, pairs, *TINY_MODEL_FLAGS, "--save_model_directory", out),
                  "evaluate": (tmp_path / "m.tflite", "--pairs_filename", pairs, "--data_directory", faces),
                  "export": (tmp_path / "weights", "--out", out, "--formats", "fp32")}[cli]
    # Parsing rules run in-process (the CLI's own main); the row that needs TensorFlow's
    # device list runs the real command.
    proc = (run_main if code == 2 else run_cli)(cli, *positional, flag, value)
    assert proc.returncode == code, proc.stderr[-2000:]
    prefix = f"python -m mfn_tf2.{cli}: error: " if code == 2 else "error: "
    assert error_line(proc).startswith(prefix + words), error_line(proc)
    assert not (out / "run.json").exists() and not (out / "metadata.json").exists()


def test_bare_boolean_flag_means_true():
    from mfn_tf2.train import parse
    args = ["faces", "lfw", "pairs.txt"]
    assert parse(args + ["--shuffle"])["data"].shuffle is True      # the original Keras implementation's spelling
    assert parse(args + ["--shuffle", "false", "--flip"])["data"].shuffle is False
    assert parse(args + ["--flip"])["eval"].flip is True


def _not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not weights\n")
    return tmp_path / "notes.txt"


PRETRAINED_ROWS = {
    "missing": (lambda tmp_path, weights: tmp_path / "nope", "no such file or folder"),
    "not a model": (lambda tmp_path, weights: _not_a_model(tmp_path),
                    "expected a training folder, its final.weights.h5, a SavedModel folder or a Keras"),
    "another architecture": (lambda tmp_path, weights: weights, "another architecture than this run's"),
}


@pytest.mark.parametrize("row", PRETRAINED_ROWS)
def test_pretrained_model(tmp_path, clean, tiny_run, row):
    make, words = PRETRAINED_ROWS[row]
    path = make(tmp_path, tiny_run[0])
    faces, pairs = clean
    # The tiny run is 32-d: this run asks for 64.
    proc = run_cli("train", faces, faces, pairs, "--image_size", "32", "--width", "0.25", "--embedding_dim", "64",
                   "--epochs", "1", "--pretrained_model", path, "--save_model_directory", tmp_path / "w")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc).startswith(f"error: --pretrained_model {path}: {words}"), error_line(proc)
    assert not (tmp_path / "w" / "checkpoint").exists()


@pytest.mark.parametrize("damaged", ["checkpoint", "ckpt index"])
def test_resume_from_a_damaged_checkpoint(tmp_path, tiny_run, damaged):
    weights, faces, pairs = tiny_run
    copy = shutil.copytree(weights, tmp_path / "w")
    from mfn_tf2.checkpoints import latest
    target = copy / "checkpoint" if damaged == "checkpoint" else Path(latest(str(copy)) + ".index")
    data = target.read_bytes()
    target.write_bytes(data[:len(data) // 2] + bytes(b ^ 0x5A for b in data[len(data) // 2:]))
    proc = run_cli("train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--epochs", "3", "--save_model_directory", copy)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert error_line(proc).startswith("error: " + str(copy)) and "damaged checkpoint" in error_line(proc), \
        error_line(proc)
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# Interrupted runs: the previous complete result stays loadable; re-running finishes.

def probe_images() -> np.ndarray:
    faces = sorted((DEMO_DATA / "heldout").rglob("*.jpg"))[:6]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in faces])


@pytest.mark.slow
def test_sigkill_during_checkpoint_write(tmp_path):
    from mfn_tf2.checkpoints import latest
    from mfn_tf2.embedders import FeatureExtractor
    faces = make_face_tree(tmp_path / "faces", n_ids=4, n_imgs=5)
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 8)
    save = tmp_path / "w"
    args = ("train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "4", "--epochs", "2",
            "--valid_split_ratio", "0", "--evaluate_epochs", "2", "--save_model_directory", save)
    log = tmp_path / "killed.txt"
    # A checkpoint every step: the kill lands while one is being written.
    kill_when(start(log, *args, "--checkpoint_steps", "1"), log, lambda: (save / "checkpoint").exists(),
              random.Random(1), jitter=1.0)
    assert latest(str(save)) is not None
    embeddings = FeatureExtractor(str(save)).infer(probe_images())
    assert embeddings.shape == (6, 32) and np.isfinite(embeddings).all()
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from epoch" in again.stdout and "done: 2 epochs" in again.stdout
    assert np.isfinite(FeatureExtractor(str(save / "embedding_model")).infer(probe_images())).all()


def test_sigkill_during_export(tiny_run, tmp_path):
    from mfn_tf2.embedders import FeatureExtractor
    save_dir, faces, pairs = tiny_run
    out = tmp_path / "export"
    args = ("export", save_dir, "--out", out, "--formats", "saved_model", "--pairs_filename", pairs,
            "--data_directory", faces)
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = out / "saved_model"
    before = FeatureExtractor(str(saved)).infer(probe_images())

    # The kill lands while the SavedModel is being written again beside its final name.
    log = tmp_path / "killed.txt"
    kill_when(start(log, *args), log, lambda: any(p.name.startswith(".tmp-") for p in out.iterdir()),
              random.Random(2), jitter=0.3)
    assert np.allclose(FeatureExtractor(str(saved)).infer(probe_images()), before, atol=1e-5)
    assert json.loads((out / "report.json").read_text())["files"] == {"saved_model": "saved_model"}

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert np.allclose(FeatureExtractor(str(saved)).infer(probe_images()), before, atol=1e-5)
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))]


@pytest.mark.slow
def test_sigkill_during_data_pack(tmp_path):
    from mfn_tf2.shards import read_manifest, read_records
    out = tmp_path / "packed"
    args = ("data", "pack", DEMO_DATA / "train", out, "--shards", "16")
    # Killed once the first shard is finished, while the others are being written.
    log = tmp_path / "killed.txt"
    kill_when(start(log, *args), log, lambda: out.exists() and any(p.suffix == ".json" for p in out.iterdir()),
              random.Random(3), jitter=0.2)
    assert not (out / "manifest.json").exists()  # an unfinished pack is never taken for a finished one
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = read_manifest(str(out))
    images = sum(1 for f in (DEMO_DATA / "train").rglob("*") if f.is_file())
    assert manifest["total"] == images
    assert sum(1 for _ in read_records(manifest["files"], shuffle=False, seed=0)) == images


def test_rerun_sweeps_what_a_killed_run_left(tmp_path, clean):
    # What a SIGKILL leaves: a half-written temp file (write_bytes) and SavedModel folder (atomic_directory).
    out = tmp_path / "packed"
    (out / ".tmp-saved_model0x1y").mkdir(parents=True)
    (out / ".tmp-manifest.jsonab12").write_text("{")
    proc = run_main("data", "pack", clean[0], out, "--shards", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [p.name for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))]


# ---------------------------------------------------------------------------------------------
# Two runs on one output folder: the second refuses, nothing is interleaved.

LOCK_ROWS = {
    "train": lambda folder, faces, pairs: ("train", faces, faces, pairs, *TINY_MODEL_FLAGS,
                                           "--save_model_directory", folder),
    "export": lambda folder, faces, pairs: ("export", faces, "--out", folder, "--formats", "fp32"),
    "data pack": lambda folder, faces, pairs: ("data", "pack", faces, folder, "--shards", "2"),
}


@pytest.mark.parametrize("row", LOCK_ROWS)
def test_second_run_on_a_locked_folder(tmp_path, clean, row):
    from mfn_tf2.fileio import OutputLock
    folder = tmp_path / "out"
    with OutputLock(str(folder)):
        proc = run_cli(*LOCK_ROWS[row](folder, *clean))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{folder}: another run is writing here" in error_line(proc), error_line(proc)
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]


# ---------------------------------------------------------------------------------------------
# FeatureExtractor.infer: a clear error, or converted where unambiguous.

RGB = np.random.default_rng(0).integers(0, 256, (2, 40, 36, 3)).astype(np.uint8)

INFER_ERRORS = {
    "bool pixels": (RGB > 127, "dtype bool"),
    "text pixels": (RGB.astype(str), "dtype <U"),
    "complex pixels": (RGB.astype(np.complex64), "dtype complex64"),
    "RGBA": (np.zeros((40, 36, 4), np.uint8), "shape (1, 40, 36, 4)"),
    "two channels": (np.zeros((2, 40, 36, 2), np.uint8), "shape (2, 40, 36, 2)"),
    "5-D": (RGB[None], "shape (1, 2, 40, 36, 3)"),
    "empty batch": (RGB[:0], "the batch is empty"),
    "zero-width image": (RGB[:, :, :0], "the batch is empty"),
    "NaN pixels": (np.where(RGB > 250, np.nan, RGB.astype(np.float32)), "NaN or infinite"),
    "infinite pixels": (np.full((40, 36, 3), np.inf, np.float32), "NaN or infinite"),
    "16-bit pixels": (RGB.astype(np.uint16) * 257, "range 0..65535"),
    "pixels scaled to -1..1": (RGB / 127.5 - 1.0, "range -1"),
}


@pytest.mark.parametrize("row", INFER_ERRORS)
def test_infer_refuses(fp32_model, row):
    from mfn_tf2.embedders import EmbedderError, FeatureExtractor
    images, words = INFER_ERRORS[row]
    with pytest.raises(EmbedderError, match=words.replace("(", r"\(").replace(")", r"\)")):
        FeatureExtractor(str(fp32_model)).infer(images)


INFER_CONVERTED = {
    "float 0-255": RGB.astype(np.float32),
    "float64 0-255": RGB.astype(np.float64),
    "int32 0-255": RGB.astype(np.int32),
    "list of arrays": list(RGB),
}


@pytest.mark.parametrize("row", INFER_CONVERTED)
def test_infer_converts_unambiguous_input(fp32_model, row):
    from mfn_tf2.embedders import FeatureExtractor
    fe = FeatureExtractor(str(fp32_model))
    assert np.allclose(fe.infer(INFER_CONVERTED[row]), fe.infer(RGB), atol=1e-5)


def test_infer_replicates_grayscale(fp32_model):
    from mfn_tf2.embedders import FeatureExtractor
    fe = FeatureExtractor(str(fp32_model))
    gray = RGB[0, :, :, 0]
    assert np.allclose(fe.infer(gray), fe.infer(np.repeat(gray[:, :, None], 3, axis=2)), atol=1e-5)
