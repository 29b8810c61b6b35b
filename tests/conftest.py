"""The shared test harness: real faces, small folders of them, and CLI runs.

Every test uses real images (the bundled LFW subset in data/lfw_demo, or the
full copy in ../shared/data/lfw when present), real TensorFlow and LiteRT.
"""
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
    """The full LFW copy (../shared/data/lfw); tests needing it skip without it."""
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny model trained once per session: (save_dir, faces, pairs file)."""
    root = tmp_path_factory.mktemp("tiny_run")
    faces = make_face_tree(root / "faces", n_ids=8, n_imgs=6)
    pairs = write_plain_pairs(faces, root / "pairs.txt")
    proc = train_tiny(root / "weights", faces, pairs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "weights", faces, pairs


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
    for name, io in meta["files"].items():
        interp = Interpreter(model_path=str(assets / name))
        interp.allocate_tensors()
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        for sample in golden["samples"]:
            x = (cv2.imread(str(assets / sample["file"]))[..., ::-1].astype(np.float32) - pre["mean"]) / pre["std"]
            q = io["input"]["quantization"]
            if q:
                x = np.clip(np.floor(x / q["scale"] + 0.5) + q["zero_point"], -128, 127)  # Math.round
            interp.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
            interp.invoke()
            e = interp.get_tensor(outp["index"]).astype(np.float32)[0]
            qo = io["output"]["quantization"]
            e = (e - qo["zero_point"]) * qo["scale"] if qo else e
            cosines.append(float(e @ np.array(sample["embeddings"][name]) / np.linalg.norm(e)))
    return cosines
