"""The committed android_demo_assets/: a real export whose golden vectors LiteRT reproduces."""
import json

from conftest import REPO, golden_cosines

ASSETS = REPO / "android_demo_assets"


def test_committed_assets_are_complete():
    meta = json.loads((ASSETS / "metadata.json").read_text())
    for name in ("README.md", "golden.json", "model_int8.tflite", "model_fp16.tflite"):
        assert (ASSETS / name).exists(), name
    assert meta["files"]["model_int8.tflite"]["input"]["dtype"] == "int8"
    assert 0 < meta["threshold"]["cosine"] < 1 and meta["embedding_dim"] == 128
    golden = json.loads((ASSETS / "golden.json").read_text())
    assert all((ASSETS / s["file"]).exists() for s in golden["samples"])
    same = [p["cosine"]["model_int8.tflite"] for p in golden["pairs"] if p["same_person"]]
    other = [p["cosine"]["model_int8.tflite"] for p in golden["pairs"] if not p["same_person"]]
    assert sum(same) / len(same) > sum(other) / len(other)  # a trained model, not noise


def test_committed_golden_vectors_reproduce_in_litert():
    cosines = golden_cosines(ASSETS)
    assert len(cosines) == 2 * len(json.loads((ASSETS / "golden.json").read_text())["samples"])
    assert min(cosines) >= 0.999
