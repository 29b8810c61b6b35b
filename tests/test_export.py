"""python -m mfn_tf2.export on a trained tiny model: every format, metadata, parity, Android assets."""
import json
import os
import re

import numpy as np
import pytest

from mfn_tf2 import config as C
from conftest import golden_cosines, make_face_tree, run_cli

# Every format but qat_int8: QAT is test_demo's and test_quantize's (the tiny demo exports it twice).
ALL = ("saved_model", "fp32", "fp16", "dynamic", "int8", "int8_islands")
TFLITE = ("model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite", "model_int8.tflite",
          "model_int8_islands.tflite")
INT8 = ("int8", "int8_islands")
FARS = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
PAIRED = re.compile(r"[+-]\d+\.\d\d points? \(\d+ pairs gained, \d+ lost; exact McNemar p = \S+: "
                    r"(not )?distinguishable from chance\)")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run exported in every format but QAT's (loose parity bounds: the model is barely trained);
    thresholds on 150 faces of 30 people (10,875 different-person pairs: FAR down to 1e-3)."""
    save_dir, faces, pairs = tiny_run
    out = tmp_path_factory.mktemp("export") / "tiny"
    assets = out.parent / "assets"
    calibration = make_face_tree(out.parent / "calibration", n_ids=30, n_imgs=5)
    proc = run_cli("export", save_dir, "--out", out, "--formats", ",".join(ALL), "--representative_dir", faces,
                   "--batch_size", "8", "--num_calibration", "20",
                   "--pairs_filename", pairs, "--data_directory", faces, "--calibration_dir", calibration,
                   "--max_accuracy_drop", "100", "--min_cosine", "0", "--android_assets", assets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, assets, proc


def test_every_format_written_and_reported(exported):
    out, _, proc = exported
    for name in ("saved_model/saved_model.pb", "model_fp32.tflite", "model_fp16.tflite", "model_dynamic.tflite",
                 "model_int8.tflite", "model_int8_islands.tflite", "metadata.json",
                 "report.md", "report.json",
                 "roc.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and not report["failed"]
    assert [m["format"] for m in report["models"]] == ["float (Keras)", *ALL]
    assert all(len(v) == 2 for v in report["latency_ms_p50"].values())
    # every timed file says which ops XNNPACK left to the builtin kernels: none in an int8 file
    assert set(report["not_on_xnnpack"]) == set(report["latency_ms_p50"]) == set(ALL) - {"saved_model"}
    assert all(report["not_on_xnnpack"][f] == [] for f in INT8)
    md = (out / "report.md").read_text()
    assert re.search(r"\| int8 \| model_int8\.tflite \| [\d.]+ \| [\d.]+ \| [\d.]+ \| none \| ok \|", md), md
    assert "| int8_islands |" in (out / "report.md").read_text() and "| int8 |" in proc.stdout
    assert not list(out.glob(".tmp*")), "temporary files left behind"


def _strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_every_tflite_file_has_its_own_thresholds(exported):
    out, _, _ = exported
    meta = json.loads((out / "metadata.json").read_text())
    rows = meta["thresholds"]
    assert sorted({r["file"] for r in rows}) == sorted(TFLITE)
    keys = {"file", "far", "cosine", "far_measured", "far_ci95", "tar", "tar_ci95", "false_accepts",
            "impostor_pairs", "genuine_pairs", "measured_on", "measurable"}
    for name in TFLITE:
        own = [r for r in rows if r["file"] == name]
        assert [r["far"] for r in own] == FARS and all(keys <= set(r) for r in own)
        assert [r["measurable"] for r in own] == [True, True, False, False, False]  # 10,875 pairs
        for r in own:
            assert (r["impostor_pairs"], r["genuine_pairs"]) == (150 * 149 // 2 - 30 * 10, 30 * 10)
            assert r["measured_on"] == os.path.relpath(out.parent / "calibration", out) == "../calibration"
            if r["measurable"]:
                assert r["far_measured"] <= r["far"] and r["far_ci95"][0] <= r["far_measured"] <= r["far_ci95"][1]
                assert -1 <= r["cosine"] <= 1 and r["tar_ci95"][0] <= r["tar"] <= r["tar_ci95"][1]
            else:
                assert r["cosine"] is None and "not measurable with 10,875 impostor pairs" in r["note"]
    # Each file's thresholds come from its own scores: the int8 files' differ from fp32's.
    at = {(r["file"], r["far"]): r["cosine"] for r in rows}
    assert at[("model_int8.tflite", 1e-3)] != at[("model_fp32.tflite", 1e-3)]
    # The recommended point: FAR 1e-3 on the fastest int8 file not distinguishably worse than float.
    thr = meta["threshold"]
    assert thr["file"] in [C.EXPORT_FILES[f] for f in INT8] and thr["far"] == 1e-3
    assert thr["cosine"] == at[(thr["file"], 1e-3)] and thr["measured_on"] == "../calibration"
    report = json.loads((out / "report.json").read_text())
    paired = {m["format"]: m["paired"] for m in report["models"]}
    assert all(f"{f} {paired[f]['text']}" in thr["why"] for f in INT8)  # each int8 file's test against float
    fine = [f for f in INT8 if not (paired[f]["distinguishable"] and paired[f]["difference_points"] < 0)]
    if fine:
        ms = {f: report["latency_ms_p50"][f]["2"] for f in fine}  # JSON keys: thread counts as strings
        assert thr["file"] == C.EXPORT_FILES[min(fine, key=ms.get)] and thr["why"].startswith("the fastest")
    assert not [v for v in _strings(meta) if os.path.isabs(v) or str(out.parent) in v]


def test_report_gives_every_model_its_paired_test_against_float(exported, tiny_run):
    out, _, _ = exported
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    assert models[0]["paired"] is None
    for m in models[1:]:
        p = m["paired"]
        assert PAIRED.fullmatch(p["text"]) and p["test"] == "exact McNemar, two-sided"
        assert p["n_pairs"] == report["pairs"]["n_pairs"] and 0 <= p["p_value"] <= 1
        # Pairs counted one by one (24 pairs in 10 folds of 3 or 2: not the mean of the folds' accuracies).
        assert p["difference_points"] == pytest.approx(100 * (p["gained"] - p["lost"]) / p["n_pairs"], abs=1e-9)
        assert p["gained"] + p["lost"] <= p["n_pairs"] and (p["gained"] + p["lost"] > 0 or p["p_value"] == 1.0)
    assert not os.path.isabs(report["pairs"]["source"]) and report["pairs"]["source"] == os.path.relpath(tiny_run[2], out)
    md = (out / "report.md").read_text()
    islands = next(m for m in models if m["format"] == "int8_islands")
    assert islands["paired"]["text"] in md and "## Thresholds" in md
    # The int8 table carries the same paired test as the verification table.
    assert [r["paired"] for r in report["int8"]] == [m["paired"] for m in models if m["format"] in INT8]
    int8_rows = [line for line in md.splitlines() if line.startswith(tuple(f"| {f} |" for f in INT8))]
    assert "| vs float (paired test) |" in md
    assert len([line for line in int8_rows if PAIRED.search(line)]) == 4  # the verification and int8 tables
    assert f"Recommended for apps: `{report['threshold']['file']}`" in md
    assert "| `model_int8_islands.tflite` | 0.001 |" in md and "not measurable with 10,875" in md


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
    proc = run_cli("export", save_dir, "--out", out, "--formats", "fp32,int8",
                   "--representative_dir", faces, "--num_calibration", "10",
                   "--pairs_filename", pairs, "--data_directory", faces, "--min_cosine", "0.999999")
    assert proc.returncode != 0
    assert "parity" in proc.stderr
    assert "FAIL" in (out / "report.md").read_text()
    assert (out / "model_int8.tflite").exists() and (out / "model_fp32.tflite").exists()
    assert not (out / "model_fp16.tflite").exists()
    # Thresholds on --data_directory's 48 faces (1,008 different-person pairs): FAR 1e-2 only, and said so.
    thr = json.loads((out / "metadata.json").read_text())["threshold"]
    assert thr["file"] == "model_int8.tflite" and thr["far"] == 1e-2 and thr["measured_on"] == os.path.relpath(faces, out)
    assert "FAR 0.001 is not measurable on 1,008 different-person pairs" in thr["why"]


def test_calibration_folder_too_small_fails_before_converting(tiny_run, tmp_path):
    save_dir, faces, pairs = tiny_run
    small = make_face_tree(tmp_path / "small", n_ids=6, n_imgs=5)
    out = tmp_path / "out"
    proc = run_cli("export", save_dir, "--out", out, "--formats", "fp32", "--pairs_filename", pairs,
                   "--data_directory", faces, "--representative_dir", faces, "--calibration_dir", small)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --calibration_dir {small}: 30 images give 375 different-person pairs, too few to measure "
        "FAR 0.01 (it needs 1000); add images or identities")
    assert not (out / "model_fp32.tflite").exists()


def _paired(lost: int, gained: int = 0, n: int = 200) -> dict:
    """A real paired test against float: the float model right on every pair but ``gained``, the other
    model losing ``lost`` of float's right pairs and gaining those ``gained``."""
    from mfn_tf2.stats import paired_difference
    ref = np.r_[np.zeros(gained, bool), np.ones(n - gained, bool)]
    other = np.r_[np.ones(gained, bool), np.zeros(lost, bool), np.ones(n - gained - lost, bool)]
    return paired_difference(ref, other)


def _recommend(tests: dict, latency=None, far_measurable=(True, True)):
    """exporting.recommend on synthetic inputs: {format: paired test} of the files, fp32 beside them."""
    from mfn_tf2.exporting import recommend
    names = ["float (Keras)", "fp32", *tests]
    files = {f: f"out/{C.EXPORT_FILES[f]}" for f in names[1:]}
    rows = [{"file": C.EXPORT_FILES[f], "far": far, "cosine": 0.3, "tar": 0.9, "measured_on": "faces",
             "measurable": ok, "impostor_pairs": 5000}
            for f in names[1:] for far, ok in zip((1e-2, 1e-3), far_measurable)]
    models = [{"paired": None}, {"paired": _paired(0)}, *({"paired": p} for p in tests.values())]
    return recommend({"models": models}, names, files, rows, latency)


def test_recommend_ships_the_fastest_int8_file_not_distinguishably_worse_than_float():
    tests = {"int8": _paired(20), "qat_int8": _paired(2, 2), "int8_islands": _paired(3, 1)}  # int8: p < 0.05
    assert tests["int8"]["distinguishable"] and not tests["qat_int8"]["distinguishable"]
    ms = {"int8": {1: 2.0, 2: 1.0}, "qat_int8": {1: 2.4, 2: 1.3}, "int8_islands": {1: 2.2, 2: 1.2}}
    thr = _recommend(tests, ms)
    # int8 is faster but distinguishably worse: the fastest of the other two ships
    assert thr["file"] == "model_int8_islands.tflite" and thr["far"] == 1e-3
    assert thr["why"].startswith("the fastest int8 file (1.20 ms at 2 threads)")
    assert all(f"{f} {p['text']}" in thr["why"] for f, p in tests.items())
    ms["qat_int8"][2] = 1.1
    assert _recommend(tests, ms)["file"] == "model_qat_int8.tflite"
    # better than float, even distinguishably, qualifies; latency decides
    assert _recommend({**tests, "int8": _paired(0, 20)}, ms)["file"] == "model_int8.tflite"


def test_recommend_without_latency_takes_islands_then_qat_then_int8():
    equal = _paired(1, 1)
    assert _recommend({"int8": equal, "qat_int8": equal, "int8_islands": equal})["file"] == "model_int8_islands.tflite"
    thr = _recommend({"int8": equal, "qat_int8": equal, "int8_islands": _paired(20)})
    assert thr["file"] == "model_qat_int8.tflite" and "latency not measured" in thr["why"]
    assert _recommend({"int8": equal})["file"] == "model_int8.tflite"


def test_recommend_when_every_int8_file_is_worse_takes_the_most_pairs_right():
    thr = _recommend({"int8": _paired(25), "qat_int8": _paired(18), "int8_islands": _paired(30)},
                     {"int8": {2: 1.0}, "qat_int8": {2: 1.3}, "int8_islands": {2: 1.2}})
    assert thr["file"] == "model_qat_int8.tflite" and "the most pairs right" in thr["why"]


def test_recommend_without_int8_files_and_when_far_1e3_is_not_measurable():
    thr = _recommend({})
    assert thr["file"] == "model_fp32.tflite" and thr["why"] == "no int8 file exported"
    thr = _recommend({"int8_islands": _paired(0)}, far_measurable=(True, False))
    assert thr["file"] == "model_int8_islands.tflite" and thr["far"] == 1e-2
    assert thr["why"].endswith("; FAR 0.001 is not measurable on 5,000 different-person pairs")


def test_islands_file_is_int8_with_float_prelu_and_depthwise_all_on_xnnpack(exported):
    from mfn_tf2.tflite import FLOAT_ISLAND_OPS, op_report
    out, _, proc = exported
    assert f"wrote {out / 'model_int8_islands.tflite'}" in proc.stdout
    report = op_report(str(out / "model_int8_islands.tflite"))
    assert all(r["delegated"] for r in report)
    assert {r["op"] for r in report if r["dtype"] in ("float32", "float16")} == {*FLOAT_ISLAND_OPS, "QUANTIZE"}
    assert {"CONV_2D", "DEQUANTIZE"} <= {r["op"] for r in report if r["dtype"] == "int8"}
    meta = json.loads((out / "metadata.json").read_text())["files"]["model_int8_islands.tflite"]
    assert meta["input"]["dtype"] == meta["output"]["dtype"] == "int8"


def test_shared_slope_backbone_skips_the_islands_file(tmp_path):
    from mfn_tf2.backbones import build_backbone
    from mfn_tf2.tflite import convert_all
    shared = build_backbone(C.ModelConfig(width=0.25, image_size=32, prelu="shared"))
    lines = []
    exp = C.ExportConfig(out=str(tmp_path), formats=("int8_islands",))
    assert convert_all(shared, exp, None, None, lines.append) == {}
    assert lines == ["skipped model_int8_islands.tflite: the backbone has no per-channel PReLU slopes, so "
                     "float islands would only leave its depthwise convs float (slower than int8)"]
    assert os.listdir(tmp_path) == []
