"""The shared test harness: real faces, small folders of them, and CLI runs.

Every test uses real images (the bundled LFW subset in data/lfw_demo, or a
full LFW copy beside the repository when present: MFN_LFW_ROOT names it), real TensorFlow and LiteRT.
"""
import contextlib
import fcntl
import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "data" / "lfw_demo"
SHARED_LFW = Path(os.environ.get("MFN_LFW_ROOT", REPO.parent / "shared" / "data" / "lfw"))


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """data/lfw_demo: train/ (identity folders), heldout/, pairs_heldout.txt."""
    assert (DEMO_DATA / "pairs_heldout.txt").exists(), "bundled data missing"
    return DEMO_DATA


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    """The full LFW copy (MFN_LFW_ROOT); tests needing it skip without it."""
    if not (SHARED_LFW / "pairs.txt").exists():
        pytest.skip(f"full LFW not found at {SHARED_LFW}")
    return SHARED_LFW


def make_face_tree(root: Path, n_ids: int = 6, n_imgs: int = 5) -> Path:
    """Copies n_ids identities x n_imgs real faces (64x64) from the bundled set into root.

    Returns root, laid out as root/<person>/<file>.jpg.
    """
    # The same people whatever n_imgs (up to 6): the ones with at least 6 images, by name.
    enough = max(n_imgs, 6)
    people = [p for p in sorted((DEMO_DATA / "train").iterdir()) if len(list(p.iterdir())) >= enough][:n_ids]
    for person in people:
        (root / person.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(person.iterdir())[:n_imgs]:
            shutil.copy(f, root / person.name / f.name)
    return root


@pytest.fixture
def face_tree(tmp_path) -> Path:
    """A small identity-folder tree of real faces (6 people x 5 images)."""
    return make_face_tree(tmp_path / "faces")


def run_cli(module: str, *args, timeout: float = 900, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs ``python -m mfn_tf2.<module> args...`` in a real subprocess.

    Returns the CompletedProcess (text stdout/stderr), never raises on exit code.
    """
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", f"mfn_tf2.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or REPO)


def run_main(module: str, *args) -> subprocess.CompletedProcess:
    """Runs ``mfn_tf2.<module>.main(args)`` in this process, as ``python -m`` would run it.

    For rules a CLI checks while parsing (exit 2, one line), without a process start
    and TensorFlow's import per case. Returns a CompletedProcess like ``run_cli``;
    an exception that ``main`` lets escape fails the test.
    """
    main = importlib.import_module(f"mfn_tf2.{module}").main
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


# A tiny but real configuration: trains in seconds on two cores.
TINY_MODEL_FLAGS = ("--image_size", "32", "--width", "0.25", "--embedding_dim", "32")


def write_plain_pairs(root: Path, path: Path, n_pairs: int = 24) -> Path:
    """Writes balanced plain-format pairs (path1 path2 label) over an identity tree."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    lines = []
    for k in range(n_pairs):
        a = people[k % len(people)]
        files = sorted(a.iterdir())
        if k % 2 == 0:
            lines.append(f"{a.name}/{files[0].name} {a.name}/{files[1 + k % (len(files) - 1)].name} 1")
        else:
            b = people[(k + 1) % len(people)]
            lines.append(f"{a.name}/{files[k % len(files)].name} {b.name}/{sorted(b.iterdir())[0].name} 0")
    path.write_text("\n".join(lines) + "\n")
    return path


def train_tiny(save_dir: Path, faces: Path, pairs: Path, *extra, epochs: int = 2) -> subprocess.CompletedProcess:
    """Runs the train CLI on a tiny model; returns the finished process."""
    return run_cli("train", faces, faces, pairs, *TINY_MODEL_FLAGS, "--batch_size", "8", "--learning_rate", "0.01",
                   "--epochs", epochs, "--checkpoint_epochs", "1", "--evaluate_epochs", "1",
                   "--save_model_directory", save_dir, *extra)


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder ``name`` that ``build(folder)`` fills once per test run, however many
    pytest-xdist workers ask for it (the others wait for the first, then share it).

    Returns the folder; tests must only read it (copy it to change it).
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    folder, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


def _train_tiny_run(root: Path) -> None:
    faces = make_face_tree(root / "faces", n_ids=8, n_imgs=6)
    pairs = write_plain_pairs(faces, root / "pairs.txt")
    proc = train_tiny(root / "weights", faces, pairs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "stdout.txt").write_text(proc.stdout)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny model trained once per test run (2 epochs): (save_dir, faces, pairs file); what the
    run printed is in save_dir's parent, stdout.txt.

    Shared by every test that needs a trained model: read it, or copy it to change it.
    """
    root = built_once(tmp_path_factory, "tiny_run", _train_tiny_run)
    return root / "weights", root / "faces", root / "pairs.txt"


def tiny_demo_args(root: Path) -> tuple:
    """The demo command of ``tiny_demo`` (without --android_assets), its output in root/demo_out."""
    return ("demo", "--data", root / "faces", "--heldout", DEMO_DATA / "heldout", "--pairs", root / "pairs.txt",
            "--out", root / "demo_out", "--epochs", "1", "--image_size", "32", "--width", "0.25")


def _tiny_demo_run(root: Path) -> None:
    faces = make_face_tree(root / "faces", n_ids=24, n_imgs=4)
    # 48 of the bundled held-out pairs in the LFW format (2 folds x 12 same + 12 different): the thresholds
    # still come from every pair of the held-out folder (over a million different-person pairs).
    lines = (DEMO_DATA / "pairs_heldout.txt").read_text().splitlines()
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(["2\t12"] + [lines[k] for first in (1, 301, 601, 901)
                                             for k in range(first, first + 12)]) + "\n")
    proc = run_cli(*tiny_demo_args(root), "--android_assets", root / "assets")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "stdout.txt").write_text(proc.stdout)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """``python -m mfn_tf2.demo`` once per test run on a tiny model (one epoch, 32 px, 24 people x 4 faces),
    with --android_assets: root/demo_out (weights/, export/, report.md), root/assets, root/stdout.txt.

    Shared by test_demo and test_android_assets: read it, or copy it to change it.
    """
    return built_once(tmp_path_factory, "tiny_demo", _tiny_demo_run)


# Tests that use these fixtures wait for a training run: marked slow (`make test-fast` skips them).
SLOW_FIXTURES = {"tiny_run", "tiny_demo"}

# The files that run longest, longest first (minutes on 2 cores); the others follow by name. With
# two workers taking one file at a time (make test: --dist loadfile --no-loadscope-reorder)
# none of these is left to run alone at the end. The first two build the shared runs: test_demo the
# tiny demo (test_android_assets reads it, long after), test_bad_input the tiny run (most others).
LONGEST_FIRST = ("test_demo.py", "test_bad_input.py", "test_train.py", "test_export.py", "test_binsets.py",
                 "test_quantize.py", "test_tflite.py", "test_multiworker.py", "test_recordio.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: by name after these


def golden_cosines(assets: Path) -> list[float]:
    """Feeds every sample PNG of an assets folder exactly as its README says, with
    LiteRT and without the kit's embedder; returns the cosine to each golden vector."""
    import json

    import cv2
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    golden = json.loads((assets / "golden.json").read_text())
    meta = json.loads((assets / "metadata.json").read_text())
    pre, cosines = meta["preprocessing"], []
    for name, spec in meta["files"].items():
        interp = Interpreter(model_path=str(assets / name))
        interp.allocate_tensors()
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        for sample in golden["samples"]:
            x = (cv2.imread(str(assets / sample["file"]))[..., ::-1].astype(np.float32) - pre["mean"]) / pre["std"]
            q = spec["input"]["quantization"]
            if q:
                x = np.clip(np.floor(x / q["scale"] + 0.5) + q["zero_point"], -128, 127)  # Math.round
            interp.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
            interp.invoke()
            e = interp.get_tensor(outp["index"]).astype(np.float32)[0]
            qo = spec["output"]["quantization"]
            e = (e - qo["zero_point"]) * qo["scale"] if qo else e
            cosines.append(float(e @ np.array(sample["embeddings"][name]) / np.linalg.norm(e)))
    return cosines
