"""python -m mfn_tf2.benchmark and mfn_tf2.latency on tiny real models, real LiteRT, real faces."""
import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from mfn_tf2.allocator import find_tcmalloc
from mfn_tf2.backend import keras, tf
from mfn_tf2.config import ModelConfig
from mfn_tf2.images import read_rgb
from mfn_tf2.benchmarking import BenchConfig, load_images, run
from mfn_tf2.latency import (RUNS, WARMUP, smooth_images, savedmodel_throughput, timed, tflite_latencies,
                             tflite_latency, tflite_throughput)
from mfn_tf2.models import ModelError
from mfn_tf2.backbones import build_backbone

TINY = ModelConfig(width=0.25, image_size=32, embedding_dim=16)
TINY_FLAGS = ["--width", "0.25", "--image_size", "32", "--embedding_dim", "16"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A width-0.25, 32-pixel backbone as a SavedModel and a .tflite (float, dynamic batch)."""
    out = tmp_path_factory.mktemp("models")
    module, backbone = tf.Module(), build_backbone(TINY)
    # A bare serving signature over the tracked variables (not the Keras model, whose layers the saver
    # would trace one by one) saves and converts in a fraction of keras' save().
    module.weights = list(backbone.variables)
    serve = tf.function(lambda image: {"embedding": backbone(image, training=False)},
                        input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="image")])
    saved = out / "saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": serve.get_concrete_function()})
    tflite = out / "tiny.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return {"tflite": tflite, "saved_model": saved}


@pytest.fixture(scope="module")
def fixed_batch_tflite(tmp_path_factory):
    """A .tflite whose reshape pins the batch to 1 (its batch cannot be resized)."""
    conv = keras.layers.Conv2D(4, 3)
    conv.build((1, 32, 32, 3))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    def embed(x):
        return tf.reshape(conv(x), [1, -1])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([embed.get_concrete_function()], conv)
    path = tmp_path_factory.mktemp("fixed") / "fixed.tflite"
    path.write_bytes(converter.convert())
    return path


def test_smooth_images_are_not_flat():
    images = smooth_images(3, 32, seed=1)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert images.std() > 20 and images.min() < 100 < images.max()
    assert not np.array_equal(images[0], images[1])


@pytest.mark.slow
def test_latency_and_throughput_of_a_tflite_model(tiny_models, demo_data):
    faces = np.stack([read_rgb(p) for p in sorted((demo_data / "heldout").rglob("*.jpg"))[:6]])
    stats = tflite_latency(str(tiny_models["tflite"]), threads=1, runs=12, warmup=2, images=faces)
    assert 0 < stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"]
    assert stats["runs"] == 12 and stats["batch"] == 1
    assert tflite_throughput(str(tiny_models["tflite"]), threads=2, batch=4, runs=3) > 0


def test_throughput_is_none_when_the_batch_is_fixed(fixed_batch_tflite):
    assert tflite_latency(str(fixed_batch_tflite), threads=1, runs=3, warmup=1)["p50"] > 0
    assert tflite_throughput(str(fixed_batch_tflite), threads=1, batch=4, runs=2) is None


@pytest.mark.slow
def test_savedmodel_throughput(tiny_models):
    assert savedmodel_throughput(str(tiny_models["saved_model"]), batch=4, runs=2, warmup=1) > 0


def test_latency_names_a_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="junk.tflite: cannot load TFLite model"):
        tflite_latency(str(junk), threads=1, runs=1)


def test_one_latency_loop_with_one_default(tiny_models):
    """The runner takes a BenchConfig; it and the export's report (the demo's figures) time with tflite_latencies."""
    path = str(tiny_models["tflite"])
    table = tflite_latencies([path], threads=(1, 2), runs=3, warmup=1)
    assert list(table) == [path] and sorted(table[path]) == [1, 2]
    assert all(s["runs"] == 3 and s["warmup"] == 1 and 0 < s["min"] <= s["p50"] for s in table[path].values())
    assert (BenchConfig().runs, BenchConfig().warmup) == (RUNS, WARMUP)
    report = run(BenchConfig(models=(path,), threads=(1,), runs=3, warmup=1, batch=2), {}, log=lambda _: None)
    assert [(r["threads"], r["runs"]) for r in report["models"][0]["runs"]] == [(1, 3)]


def test_images_to_feed_are_found_by_content(demo_data, tmp_path):
    """--images: a face saved without an extension is used, a stray text file is not, by content."""
    face = sorted((demo_data / "heldout").rglob("*.jpg"))[0]
    shutil.copy(face, tmp_path / "face_no_extension")
    (tmp_path / "notes.jpg").write_text("not an image")
    images = load_images(str(tmp_path))
    assert images.shape[0] == 1
    np.testing.assert_array_equal(images[0], read_rgb(face))
    (tmp_path / "face_no_extension").unlink()
    with pytest.raises(ValueError, match="no images found"):
        load_images(str(tmp_path))


def test_timed_runs_warmup_untimed_then_times_each_run():
    calls, prepared = [], []
    times = timed(lambda: calls.append(len(calls)), runs=3, warmup=2, prepare=prepared.append)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert calls == [0, 1, 2, 3, 4] and prepared == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_cli_writes_json_and_markdown(tiny_models, demo_data, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    res = run_cli("benchmark", tiny_models["tflite"], tiny_models["saved_model"], "--threads", "1,2",
                  "--runs", "5", "--warmup", "1", "--batch", "4", "--images", demo_data / "heldout",
                  "--json", out_json, "--markdown", out_md)
    assert res.returncode == 0, res.stderr
    report = json.loads(out_json.read_text())
    assert {"machine", "settings", "models", "load_after"} <= set(report)
    assert report["machine"]["cores"] >= 1 and report["machine"]["versions"]["tensorflow"]
    lite, saved = report["models"]
    assert lite["kind"] == "tflite" and lite["size_mb"] > 0
    assert [r["threads"] for r in lite["runs"]] == [1, 2]
    for r in lite["runs"]:
        assert 0 < r["p50"] <= r["p90"] <= r["p99"] and r["mean"] > 0 and r["throughput"] > 0
    assert saved["kind"] == "saved_model" and saved["runs"][0]["throughput"] > 0
    assert "tiny.tflite" in res.stdout and "p50 ms" in res.stdout
    markdown = out_md.read_text()
    assert "| model | kind |" in markdown and "tiny.tflite" in markdown


@pytest.mark.slow
def test_cli_training_speed_synthetic_and_real(face_tree, tiny_models, tmp_path):
    synthetic, real = tmp_path / "synthetic.json", tmp_path / "real.json"
    common = ["--train", *TINY_FLAGS, "--batch_size", "8", "--train_steps", "2", "--train_warmup", "1"]
    res = run_cli("benchmark", *common, "--classes", "10", "--json", synthetic)
    assert res.returncode == 0, res.stderr
    training = json.loads(synthetic.read_text())["training"]
    assert training["images_per_second"] > 0 and training["steps"] == 2
    assert training["data"] == "synthetic" and training["classes"] == 10
    assert "training:" in res.stdout
    # The CLI restarts itself with tcmalloc where it is installed (allocator.py), unless told not to.
    malloc = json.loads(synthetic.read_text())["machine"]["malloc"]
    assert malloc.startswith("tcmalloc") == (find_tcmalloc() is not None), malloc
    assert f"malloc: {malloc}" in res.stdout
    told = tmp_path / "told.json"  # any benchmark reports its allocator: the cheapest one here
    res = run_cli("benchmark", tiny_models["tflite"], "--runs", "1", "--warmup", "0", "--threads", "1",
                  "--json", told, env={"MFN_TF2_TCMALLOC": "0"})
    assert res.returncode == 0, res.stderr
    assert json.loads(told.read_text())["machine"]["malloc"] == "the C library's"

    res = run_cli("benchmark", *common, "--train_directory", face_tree, "--pipeline_batches", "3",
                  "--json", real)
    assert res.returncode == 0, res.stderr
    report = json.loads(real.read_text())
    assert report["pipeline"]["images_per_second"] > 0 and report["pipeline"]["batches"] == 3
    assert report["training"]["classes"] == 6 and report["training"]["images_per_second"] > 0


def test_cli_bad_model_path_is_one_error_line(tmp_path):
    missing = tmp_path / "nope.tflite"
    res = run_cli("benchmark", missing, "--runs", "1")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.tflite" in lines[0]


def test_cli_model_of_another_kind_is_the_one_not_a_model_line(tmp_path):
    res = run_cli("benchmark", tmp_path, "--runs", "1")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path}: expected a .tflite file or a SavedModel folder; this is not a model of those kinds"]


def test_cli_needs_a_model_or_train():
    res = run_cli("benchmark")
    assert res.returncode == 2 and "give at least one MODEL" in res.stderr
