"""python -m mfn_tf2.export on a trained tiny model: every format, metadata, parity, Android assets."""
import json
import re

import numpy as np
import pytest

from conftest import golden_cosines, run_cli

ALL = ("saved_model", "fp32", "fp16", "dynamic", "int8", "qat_int8")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run exported in every format (loose parity bounds: the model is barely trained)."""
    save_dir, faces, pairs = tiny_run
    out = tmp_path_factory.mktemp("export") / "tiny"
    assets = out.parent / "assets"
    proc = run_cli("export", save_dir, "--out", out, "--representative_dir", faces,
                   "--train_directory", faces, "--batch_size", "8", "--num_calibration", "20", "--qat_epochs", "0.5",
                   "--pairs_filename", pairs, "--data_directory", faces,
                   "--max_accuracy_drop", "100", "--min_cosine", "0", "--android_assets", assets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, assets, proc


def test_every_format_written_and_reported(exported):
    out, _, proc = exported
    for name in ("saved_model/saved_model.pb", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                 "model_int8.tflite", "model_qat_int8.tflite", "metadata.json", "report.md", "report.json",
                 "roc.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and not report["failed"]
    assert [m["format"] for m in report["models"]] == ["float (Keras)", *ALL]
    assert all(len(v) == 2 for v in report["latency_ms_p50"].values())
    assert "| qat_int8 |" in (out / "report.md").read_text() and "| int8 |" in proc.stdout
    assert not list(out.glob(".tmp*")), "temporary files left behind"


def test_qat_runs_a_fraction_of_an_epoch(exported):
    """--qat_epochs 0.5: half an epoch's steps (rounded, at least one), one Keras "epoch" of them."""
    out, _, proc = exported
    found = re.search(r"QAT \(per-channel weight scales\): 0.5 epoch\(s\) = (\d+) steps of 8 from (\d+) images",
                      proc.stdout)
    assert found, proc.stdout[-2000:]
    steps, images = int(found[1]), int(found[2])
    assert steps == max(1, round(0.5 * (images // 8))) and f"{steps}/{steps} - " in proc.stdout
    assert "QAT (0.5 epoch(s), lr 1e-05)" in (out / "report.md").read_text()


def test_head_stripped_savedmodel_matches_training_backbone(exported, tiny_run):
    from mfn_tf2.embedders import FeatureExtractor
    out, _, _ = exported
    faces = np.random.default_rng(3).integers(0, 255, (4, 48, 48, 3), dtype=np.uint8)
    a = FeatureExtractor(str(tiny_run[0])).infer(faces)
    b = FeatureExtractor(str(out / "saved_model")).infer(faces)
    assert a.shape == b.shape == (4, 32)
    assert np.sum(a * b, axis=1).min() > 0.9999


def test_metadata_lets_evaluator_run_without_flags(exported, tiny_run):
    out, _, _ = exported
    _, faces, pairs = tiny_run
    meta = json.loads((out / "metadata.json").read_text())
    int8 = meta["files"]["model_int8.tflite"]
    assert int8["input"]["dtype"] == "int8" and int8["input"]["quantization"]["scale"] > 0
    assert meta["preprocessing"]["channel_order"] == "RGB" and meta["embedding_dim"] == 32
    assert -1.0 <= meta["threshold"]["cosine"] <= 1.0 and meta["threshold"]["far"] == 1e-3
    proc = run_cli("evaluate", out / "model_int8.tflite", "--pairs_filename", pairs, "--data_directory", faces,
                   "--json", out.parent / "e.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads((out.parent / "e.json").read_text())["models"][0]["report"]["accuracy"]
    reported = {m["format"]: m["report"]["accuracy"] for m in json.loads((out / "report.json").read_text())["models"]}
    assert evaluated == pytest.approx(reported["int8"], abs=1e-9)


def test_android_golden_vectors_reproduce_by_hand(exported):
    _, assets, _ = exported
    meta = json.loads((assets / "metadata.json").read_text())
    assert set(meta["files"]) == {"model_int8.tflite", "model_fp16.tflite"}
    cosines = golden_cosines(assets)
    assert len(cosines) >= 12 and min(cosines) >= 0.999
    assert "x = (p - 127.5) / 128.0" in (assets / "README.md").read_text()


def test_parity_failure_exits_non_zero_and_keeps_files(tiny_run, tmp_path):
    save_dir, faces, pairs = tiny_run
    out = tmp_path / "strict"
    proc = run_cli("export", save_dir, "--out", out, "--formats", "saved_model,fp32,int8",
                   "--representative_dir", faces, "--num_calibration", "10",
                   "--pairs_filename", pairs, "--data_directory", faces, "--min_cosine", "0.999999")
    assert proc.returncode != 0
    assert "parity" in proc.stderr
    assert "FAIL" in (out / "report.md").read_text()
    assert (out / "model_int8.tflite").exists() and (out / "model_fp32.tflite").exists()
    assert not (out / "model_fp16.tflite").exists()
