"""The whole kit in one command, on the bundled real faces (a subset of LFW).

    make demo                                   # = python -m mfn_tf2.demo --android_assets, after the install
    python -m mfn_tf2.demo --out demo_out       # train, verify, export, benchmark, report
    python -m mfn_tf2.demo --android_assets     # and refresh android_demo_assets/ from this run
    python -m mfn_tf2.demo --data faces/ --heldout lfw/ --pairs lfw/pairs.txt   # your own folders

Steps: train MobileFaceNet + ArcFace with the CPU recipe (``--recipe cpu_demo`` of
``mfn_tf2.train``), verify it on the held-out pairs (with and without flip),
export SavedModel + TFLite fp32 / fp16 / dynamic / int8 PTQ / int8 QAT and verify
every exported model on the same pairs, export int8 PTQ and QAT again with
per-tensor weight scales (what some accelerators and NNAPI drivers take),
benchmark them on LiteRT, and write ``demo_out/report.md``. With
``--android_assets`` the app's assets are written from this run's export (``make
demo`` refreshes ``android_demo_assets/``). A second run reuses the steps that
are finished.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from mfn_tf2 import config as C

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, "data", "lfw_demo")


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m mfn_tf2.demo``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.demo", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--data", default=os.path.join(BUNDLED, "train"), help="training identity folders")
    p.add_argument("--heldout", default=os.path.join(BUNDLED, "heldout"), help="root of the pairs' images")
    p.add_argument("--pairs", default=os.path.join(BUNDLED, "pairs_heldout.txt"), help="verification pairs")
    p.add_argument("--out", default="demo_out", help="result folder")
    p.add_argument("--template", default="lfw_a", choices=C.TEMPLATE_NAMES,
                   help="the 5-point layout of --data's faces, named in metadata.json for apps "
                        "(default: lfw_a, the bundled LFW faces')")
    p.add_argument("--recipe", default="cpu_demo", choices=sorted(C.RECIPES), help="training recipe")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (tests: 1)")
    p.add_argument("--image_size", type=int, default=None, help="override the recipe's input size")
    p.add_argument("--width", type=float, default=None, help="override the recipe's width")
    # Half an epoch: on the demo model QAT int8 scored as well as after a whole one (87.25 vs 86.83 %
    # per-channel, 86.92 % per-tensor; README "The demo's recipe") in half the time, twice over.
    p.add_argument("--qat_epochs", type=float, default=0.5, help="quantization-aware fine-tuning epochs")
    p.add_argument("--android_assets", nargs="?", const=os.path.join(REPO, "android_demo_assets"),
                   default=None, help="refresh this assets folder (default android_demo_assets/)")
    return p


def step(title: str, done: bool, fn, log=print):
    """Runs one demo step unless ``done``; prints its one-line result and time."""
    if done:
        log(f"[skip] {title}: already done (delete the folder to redo it)")
        return None
    log(f"[....] {title}")
    start = time.monotonic()
    result, line = fn()
    log(f"[done] {title}: {line} ({time.monotonic() - start:.0f} s)")
    return result


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.demo``."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    from mfn_tf2 import training  # here, not at the top: --help without TensorFlow's start-up
    from mfn_tf2.embedders import FeatureExtractor
    from mfn_tf2.fileio import OutputLock, write_text
    from mfn_tf2.reports import demo_markdown
    from mfn_tf2.verification import load_pairs, verify_models
    recipe = C.RECIPES[ns.recipe]
    overrides = {k: v for k, v in {"image_size": ns.image_size, "width": ns.width}.items() if v is not None}
    weights, export_dir = os.path.join(ns.out, "weights"), os.path.join(ns.out, "export")
    try:  # a rejected value is an argument error before any work
        model_cfg = C.replace(recipe.model, **overrides)
        data_cfg = C.replace(recipe.data, train_directory=ns.data)
        train_cfg = C.replace(recipe.train, save_model_directory=weights,
                              **({"epochs": ns.epochs} if ns.epochs else {}))
        eval_cfg = C.EvalConfig(pairs_filename=ns.pairs, data_directory=ns.heldout, far_target=(1e-3, 1e-2))
        exp_cfg = C.ExportConfig(out=export_dir, representative_dir=ns.data, qat_epochs=ns.qat_epochs,
                                 template=ns.template)
    except ValueError as err:
        parser.error(str(err))
    from mfn_tf2 import cli
    from mfn_tf2.calibration import list_faces
    try:  # every pair of the held-out faces measures the thresholds: a folder too small fails before training
        list_faces(ns.heldout, C.FAR_TARGETS, "--heldout")
    except ValueError as err:  # DataError, CalibrationError
        cli.fail(str(err))
    os.makedirs(ns.out, exist_ok=True)
    with OutputLock(ns.out):
        trained = os.path.exists(os.path.join(weights, "embedding_model", "saved_model.pb"))
        step(f"train ({ns.recipe}: {model_cfg.arch} {model_cfg.image_size}px, {train_cfg.epochs} epochs)",
             trained, lambda: (training.run(model_cfg, data_cfg, eval_cfg, train_cfg), "checkpoint in " + weights))
        pairs = load_pairs(eval_cfg)
        float_fig = {}

        def verify_float():
            for flip in (False, True):
                r = verify_models([FeatureExtractor(weights, flip=flip)], pairs, eval_cfg.far_target)
                float_fig["flip" if flip else "plain"] = r["models"][0]["report"]
            plain, flip = float_fig["plain"], float_fig["flip"]
            return None, (f"accuracy {100 * plain['accuracy']:.2f} % (with flip {100 * flip['accuracy']:.2f} %) "
                          f"on {len(pairs.labels)} held-out pairs")
        step("verify the float model", False, verify_float)
        report_json = os.path.join(export_dir, "report.json")
        exported = os.path.exists(report_json) and os.path.getmtime(report_json) > os.path.getmtime(
            os.path.join(weights, "embedding_model", "saved_model.pb"))
        step("export + verify every format", exported, lambda: _export(weights, exp_cfg, eval_cfg, data_cfg))
        if ns.android_assets:  # from this run's export: the files the report below describes
            step("android assets", False, lambda: _assets(export_dir, ns.android_assets, pairs))
        per_tensor = C.replace(exp_cfg, out=export_dir + "_per_tensor", formats=("fp32", "int8", "qat_int8"),
                               per_tensor=True, max_accuracy_drop=100.0, min_cosine=-1.0)  # compared, not gated
        per_tensor_json = os.path.join(per_tensor.out, "report.json")
        step("export + verify int8 with per-tensor weight scales", exported and os.path.exists(per_tensor_json),
             lambda: _export(weights, per_tensor, eval_cfg, data_cfg))
        with open(report_json) as f:
            exp_report = json.load(f)
        with open(per_tensor_json) as f:
            per_tensor_report = json.load(f)
        bench = step("benchmark (LiteRT, XNNPACK)", False, lambda: _benchmark(export_dir, exp_report))
        write_text(os.path.join(ns.out, "report.md"),
                   demo_markdown(ns, model_cfg, train_cfg, float_fig, exp_report, bench, export_dir,
                                 per_tensor_report))
    print(f"report: {os.path.join(ns.out, 'report.md')}")


def _export(weights, exp_cfg, eval_cfg, data_cfg):
    from mfn_tf2 import exporting
    report = exporting.run(weights, exp_cfg, eval_cfg, data_cfg)
    verdict = "all formats within parity bounds" if report["ok"] else "PARITY FAILURE, see report"
    return report, f"{len(report['files'])} files, {verdict}"


def _assets(export_dir: str, folder: str, pairs):
    from mfn_tf2 import cli
    from mfn_tf2.android import AssetsError, write_assets
    said = []
    try:
        write_assets(export_dir, folder, pairs, log=said.append)
    except AssetsError as err:
        cli.fail(f"--android_assets {folder}: {err}")
    return None, said[-1].removeprefix("android assets: ")


def _benchmark(export_dir: str, exp_report: dict):
    from mfn_tf2.benchmarking import bench_exports
    rows = bench_exports(export_dir, exp_report["files"])
    fp32 = next((r["p50_2"] for r in rows if r["format"] == "fp32"), None)
    best = min(rows, key=lambda r: r["p50_2"])
    return rows, f"fastest {best['format']} {best['p50_2']:.2f} ms at 2 threads" + (
        f" (fp32 {fp32:.2f} ms)" if fp32 else "")


if __name__ == "__main__":
    main()
