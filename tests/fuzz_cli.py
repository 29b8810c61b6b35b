"""The process of tests/test_fuzz.py: corrupted inputs through the CLIs' own ``main``.

    python tests/fuzz_cli.py WORKDIR SEED COUNT OUT.json

Builds its inputs in WORKDIR (a small face tree, plain pairs over it, a tiny
fp32 .tflite, a training directory with an untrained checkpoint), then for each
kind of input writes COUNT seeded corruptions (a random truncation, or 1-8
random bytes changed) and runs the CLI a user would run on it:

    pairs file      -> python -m mfn_tf2.evaluate MODEL --pairs_filename BAD
    .tflite         -> python -m mfn_tf2.evaluate BAD --pairs_filename ...
    JPEG            -> python -m mfn_tf2.data pack FACES (holding BAD) OUT
    checkpoint index (``checkpoint`` and ``ckpt-N.index``)
                    -> python -m mfn_tf2.evaluate WEIGHTS (holding BAD) ...

Calling ``main(argv)`` in one process runs exactly what ``python -m`` runs,
without paying TensorFlow's import per case. Each outcome (exit code, stdout,
stderr, and the traceback of anything ``main`` let escape) goes to OUT.json.
"""
import contextlib
import io
import json
import os
import random
import shutil
import sys
import traceback

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import make_face_tree, write_plain_pairs  # noqa: E402


def corrupt(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A random truncation or 1-8 random byte changes of ``data``; (bytes, what was done)."""
    if rng.random() < 0.4:
        cut = rng.randrange(len(data))
        return data[:cut], f"truncated to {cut} of {len(data)} bytes"
    out, where = bytearray(data), []
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= rng.randrange(1, 256)
        where.append(i)
    return bytes(out), f"bytes changed at {sorted(where)}"


def run_main(main, argv) -> dict:
    """Runs a CLI's main as ``python -m`` would: exit code, stdout, stderr, escaped traceback."""
    out, err = io.StringIO(), io.StringIO()
    code, escaped = 0, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # what python -m would print as a traceback
            code, escaped = 1, traceback.format_exc()
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": escaped}


def build_inputs(work: str) -> dict:
    """The clean inputs every corruption starts from."""
    from pathlib import Path

    from mfn_tf2.backend import keras, tf
    from mfn_tf2.checkpoints import claim_directory, training_checkpoint
    from mfn_tf2.config import ModelConfig
    from mfn_tf2.backbones import build_backbone
    from mfn_tf2.recognizer import build_recognizer
    from mfn_tf2.tflite import convert
    root = Path(work)
    faces = make_face_tree(root / "faces", n_ids=3, n_imgs=3)
    pairs = write_plain_pairs(faces, root / "pairs.txt", 6)
    cfg = ModelConfig(image_size=32, width=0.25, embedding_dim=32)  # conftest's TINY_MODEL_FLAGS
    keras.utils.set_random_seed(0)
    backbone = build_backbone(cfg)
    (root / "model.tflite").write_bytes(convert(backbone, "fp32"))
    weights = root / "weights"
    names = sorted(p.name for p in faces.iterdir())
    claim_directory(str(weights), cfg, names)
    rec = build_recognizer(cfg, len(names), backbone=backbone)
    opt = keras.optimizers.SGD()
    training_checkpoint(rec, opt, tf.Variable(0, dtype=tf.int64)).save(str(weights / "ckpt"))
    return {"faces": faces, "pairs": pairs, "model": root / "model.tflite", "weights": weights}


def cases(inputs: dict, count: int, rng: random.Random, work: str):
    """(kind, file to corrupt, argv builder) per kind of input."""
    from mfn_tf2 import data, evaluate
    faces, pairs, model, weights = inputs["faces"], inputs["pairs"], inputs["model"], inputs["weights"]
    jpeg = sorted(sorted(faces.iterdir())[0].iterdir())[0]
    index = next(weights.glob("ckpt-*.index"))
    on_pairs = ["--pairs_filename", pairs, "--data_directory", faces]
    plans = {
        "pairs": (pairs, evaluate.main, [model, *on_pairs]),
        "tflite": (model, evaluate.main, [model, *on_pairs]),
        "jpeg": (jpeg, data.main, ["pack", faces, os.path.join(work, "packed")]),
        "checkpoint": (weights / "checkpoint", evaluate.main, [weights, *on_pairs]),
        "ckpt_index": (index, evaluate.main, [weights, *on_pairs]),
    }
    for kind, (target, main, argv) in plans.items():
        clean = target.read_bytes()
        for k in range(count):
            bad, how = corrupt(clean, rng)
            target.write_bytes(bad)
            shutil.rmtree(os.path.join(work, "packed"), ignore_errors=True)
            yield {"kind": kind, "case": k, "file": str(target), "corruption": how, **run_main(main, argv),
                   "still_decodes": _decodes(target) if kind == "jpeg" else None}
        target.write_bytes(clean)


def _decodes(path) -> bool:
    from mfn_tf2.images import ImageError, read_rgb
    try:
        read_rgb(path)
        return True
    except ImageError:
        return False


def main(work: str, seed: int, count: int, out: str) -> None:
    inputs = build_inputs(work)
    results = list(cases(inputs, count, random.Random(seed), work))
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
