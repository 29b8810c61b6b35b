"""A shortened `python -m mfn_tf2.demo` (tiny model, one epoch): every step, model file and report part,
and the Android assets written from that same run's export (the run is conftest's ``tiny_demo``, shared
with test_android_assets)."""
import json
import re
import shutil

from conftest import make_face_tree, run_cli, tiny_demo_args, write_plain_pairs


def test_short_demo_produces_report_pngs_and_every_model(tiny_demo, tmp_path):
    out, stdout = tiny_demo / "demo_out", (tiny_demo / "stdout.txt").read_text()
    for step in ("train", "verify the float model", "export + verify every format",
                 "export + verify int8 with per-tensor weight scales"):
        assert f"[done] {step}" in stdout, step
    export = out / "export"
    for name in ("saved_model/saved_model.pb", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                 "model_int8.tflite", "model_qat_int8.tflite", "model_int8_islands.tflite", "metadata.json",
                 "roc.png"):
        assert (export / name).exists(), name
    assert (export / "roc.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    for fmt in ("fp32", "fp16", "dynamic", "int8", "qat_int8", "int8_islands", "saved_model"):
        assert f"| {fmt} |" in report, fmt
    assert "export/roc.png" in report and "with flip" in stdout
    # one latency figure per file and thread count: the export's, with the ops XNNPACK left out
    assert report.count("p50 2 threads (ms)") == 1 and "| ops not on XNNPACK |" in report
    # each int8 file (per-channel and per-tensor) against float with its paired test
    for name in ("model_int8.tflite", "model_qat_int8.tflite"):
        for scales in ("per-channel", "per-tensor"):
            assert re.search(rf"`{name}` \({scales}\): [+-]\d+\.\d\d points? \(\d+ pairs gained, \d+ lost; "
                             r"exact McNemar p = \S+: (not )?distinguishable from chance\)", report), (name, scales)
    # QAT: half an epoch's steps (rounded, at least one), one Keras "epoch" of them
    found = re.search(r"QAT \(per-channel weight scales\): 0.5 epoch\(s\) = (\d+) steps of (\d+) from (\d+) "
                      r"images", stdout)
    assert found, stdout[-2000:]
    steps, batch, images = map(int, found.groups())
    assert steps == max(1, round(0.5 * (images // batch))) and f"{steps}/{steps} - " in stdout
    assert "QAT (0.5 epoch(s), lr 1e-05)" in report
    meta = json.loads((export / "metadata.json").read_text())
    thr = meta["threshold"]
    assert "## What ships" in report and f"cosine >= **{thr['cosine']:.4f}**" in report and thr["why"] in report
    # the assets come from this run's export: its recommended int8 file, byte for byte, and its thresholds
    assets = tiny_demo / "assets"
    assert "[done] android assets" in stdout
    shipped = json.loads((assets / "metadata.json").read_text())
    assert shipped["files"]["model_int8.tflite"]["source"] == thr["file"]
    assert (assets / "model_int8.tflite").read_bytes() == (export / thr["file"]).read_bytes()
    assert (assets / "model_fp16.tflite").read_bytes() == (export / "model_fp16.tflite").read_bytes()
    assert shipped["threshold"]["cosine"] == thr["cosine"] and shipped["threshold"]["source"] == thr["file"]
    golden = json.loads((assets / "golden.json").read_text())
    assert len(golden["samples"]) >= 6 and golden["threshold"]["model_int8.tflite"] == thr["cosine"]
    from mfn_tf2.android import leaks
    found = {p.name: leaks(p.read_text()) for p in assets.rglob("*") if p.suffix in (".md", ".json")}
    assert len(found) == 4 and not any(found.values()), found
    copy = tmp_path / "copy"  # the shared run is only read: a second run goes to a copy (mtimes kept)
    shutil.copytree(tiny_demo, copy)
    again = run_cli(*tiny_demo_args(copy))  # reuses the finished steps
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[skip] train" in again.stdout and "[skip] export" in again.stdout


def test_heldout_folder_too_small_for_thresholds_fails_before_training(tmp_path):
    faces = make_face_tree(tmp_path / "faces", n_ids=6, n_imgs=5)  # 375 different-person pairs
    pairs = write_plain_pairs(faces, tmp_path / "pairs.txt", 12)
    out = tmp_path / "demo_out"
    proc = run_cli("demo", "--data", faces, "--heldout", faces, "--pairs", pairs, "--out", out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --heldout {faces}: 30 images give 375 different-person pairs, too few to measure FAR 0.01 "
        "(it needs 1000); add images or identities")
    assert not (out / "weights").exists()
