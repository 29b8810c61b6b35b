"""A shortened `python -m mfn_tf2.demo` (tiny model, one epoch): every step, model file and report part."""
import json

import pytest

from conftest import make_face_tree, run_cli, write_plain_pairs

pytestmark = pytest.mark.slow  # trains, exports and benchmarks


def test_short_demo_produces_report_pngs_and_every_model(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=24, n_imgs=4)
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 48)  # 11 verifications: not the 1,200 bundled pairs
    out = tmp_path / "demo_out"
    args = ("demo", "--data", faces, "--heldout", faces, "--pairs", pairs, "--out", out, "--epochs", "1",
            "--image_size", "32", "--width", "0.25", "--android_assets", tmp_path / "assets")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in ("train", "verify the float model", "export + verify every format", "benchmark"):
        assert f"[done] {step}" in proc.stdout, step
    export = out / "export"
    for name in ("saved_model/saved_model.pb", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                 "model_int8.tflite", "model_qat_int8.tflite", "metadata.json", "roc.png"):
        assert (export / name).exists(), name
    assert (export / "roc.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    for fmt in ("fp32", "fp16", "dynamic", "int8", "qat_int8", "saved_model"):
        assert f"| {fmt} |" in report, fmt
    assert "export/roc.png" in report and "## Benchmark" in report and "with flip" in proc.stdout
    golden = json.loads((tmp_path / "assets" / "golden.json").read_text())
    assert len(golden["samples"]) >= 6
    again = run_cli(*args[:-2])  # a second run reuses the finished steps
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[skip] train" in again.stdout and "[skip] export" in again.stdout
