"""The whole kit in one command, on the bundled real faces (a subset of LFW).

    make demo                                   # = python -m mfn_tf2.demo, after the install
    python -m mfn_tf2.demo --out demo_out       # train, verify, export, benchmark, report
    python -m mfn_tf2.demo --android_assets     # also refresh android_demo_assets/
    python -m mfn_tf2.demo --data faces/ --heldout lfw/ --pairs lfw/pairs.txt   # your own folders

Steps: train MobileFaceNet + ArcFace with the CPU recipe (``--recipe cpu_demo`` of
``mfn_tf2.train``), verify it on the held-out pairs (with and without flip),
export SavedModel + TFLite fp32 / fp16 / dynamic / int8 PTQ / int8 QAT and verify
every exported model on the same pairs, export int8 PTQ and QAT again with
per-tensor weight scales (what some accelerators and NNAPI drivers take),
benchmark them on LiteRT, and write ``demo_out/report.md``. A second run reuses
the steps that are finished.
"""
from __future__ import annotations

import argparse
from collections import Counter
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
    p.add_argument("--recipe", default="cpu_demo", choices=sorted(C.RECIPES), help="training recipe")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (tests: 1)")
    p.add_argument("--image_size", type=int, default=None, help="override the recipe's input size")
    p.add_argument("--width", type=float, default=None, help="override the recipe's width")
    p.add_argument("--qat_epochs", type=int, default=1, help="quantization-aware fine-tuning epochs")
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
    from mfn_tf2 import export, train
    from mfn_tf2.fileio import OutputLock, write_text
    from mfn_tf2.verification import load_pairs, verify_models
    from mfn_tf2.embedders import FeatureExtractor
    recipe = C.RECIPES[ns.recipe]
    overrides = {k: v for k, v in {"image_size": ns.image_size, "width": ns.width}.items() if v is not None}
    weights, export_dir = os.path.join(ns.out, "weights"), os.path.join(ns.out, "export")
    try:  # a rejected value is an argument error before any work
        model_cfg = C.replace(recipe.model, **overrides)
        data_cfg = C.replace(recipe.data, train_directory=ns.data, image_size=model_cfg.image_size)
        train_cfg = C.replace(recipe.train, save_model_directory=weights,
                              **({"epochs": ns.epochs} if ns.epochs else {}))
        eval_cfg = C.EvalConfig(pairs_filename=ns.pairs, data_directory=ns.heldout, far_target=(1e-3, 1e-2))
        exp_cfg = C.ExportConfig(out=export_dir, representative_dir=ns.data, qat_epochs=ns.qat_epochs,
                                 android_assets=ns.android_assets)
    except ValueError as err:
        parser.error(str(err))
    os.makedirs(ns.out, exist_ok=True)
    with OutputLock(ns.out):
        trained = os.path.exists(os.path.join(weights, "embedding_model", "saved_model.pb"))
        step(f"train ({ns.recipe}: {model_cfg.arch} {model_cfg.image_size}px, {train_cfg.epochs} epochs)",
             trained, lambda: (train.run(model_cfg, data_cfg, eval_cfg, train_cfg), "checkpoint in " + weights))
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
        step("export + verify every format", exported and not ns.android_assets,
             lambda: _export(export, weights, exp_cfg, eval_cfg, data_cfg))
        per_tensor = C.replace(exp_cfg, out=export_dir + "_per_tensor", formats=("fp32", "int8", "qat_int8"),
                               per_tensor=True, android_assets=None,
                               max_accuracy_drop=100.0, min_cosine=-1.0)  # compared in the report, not gated
        per_tensor_json = os.path.join(per_tensor.out, "report.json")
        step("export + verify int8 with per-tensor weight scales",
             exported and os.path.exists(per_tensor_json) and not ns.android_assets,
             lambda: _export(export, weights, per_tensor, eval_cfg, data_cfg))
        with open(report_json) as f:
            exp_report = json.load(f)
        with open(per_tensor_json) as f:
            exp_report["int8"] += json.load(f)["int8"]
        bench = step("benchmark (LiteRT, XNNPACK)", False, lambda: _benchmark(export_dir, exp_report))
        write_text(os.path.join(ns.out, "report.md"),
                   report_markdown(ns, model_cfg, train_cfg, float_fig, exp_report, bench, export_dir))
    print(f"report: {os.path.join(ns.out, 'report.md')}")


def _export(export, weights, exp_cfg, eval_cfg, data_cfg):
    report = export.run(weights, exp_cfg, eval_cfg, data_cfg)
    verdict = "all formats within parity bounds" if report["ok"] else "PARITY FAILURE, see report"
    return report, f"{len(report['files'])} files, {verdict}"


def _benchmark(export_dir: str, exp_report: dict):
    from mfn_tf2.latency import tflite_latency
    from mfn_tf2.tflite import reference_only_ops
    rows = []
    for fmt, name in exp_report["files"].items():
        if name.endswith(".tflite"):
            path = os.path.join(export_dir, name)
            lat = {t: tflite_latency(path, threads=t, runs=100, warmup=10) for t in (1, 2)}
            rows.append({"format": fmt, "file": name, "size_mb": os.path.getsize(path) / 1e6,
                         "p50_1": lat[1]["p50"], "p50_2": lat[2]["p50"], "p90_2": lat[2]["p90"],
                         "not_delegated": reference_only_ops(path)})
    fp32 = next((r["p50_2"] for r in rows if r["format"] == "fp32"), None)
    best = min(rows, key=lambda r: r["p50_2"])
    return rows, f"fastest {best['format']} {best['p50_2']:.2f} ms at 2 threads" + (
        f" (fp32 {fp32:.2f} ms)" if fp32 else "")


def report_markdown(ns, model_cfg, train_cfg, float_fig, exp_report, bench, export_dir) -> str:
    """demo_out/report.md: what was trained, how well every model verifies, how fast it runs."""
    from mfn_tf2.export import int8_markdown
    from mfn_tf2.host import machine_info, machine_line
    machine = machine_info()
    lines = ["# mfn_tf2 demo report", "",
             f"Machine: {machine_line(machine)}; TensorFlow "
             f"{machine['versions'].get('tensorflow')}, LiteRT {machine['versions'].get('ai-edge-litert')}. "
             f"Model: {model_cfg.arch}, {model_cfg.image_size}x{model_cfg.image_size} input, "
             f"{model_cfg.embedding_dim}-d embedding; recipe `{ns.recipe}`, {train_cfg.epochs} epochs.", "",
             "## Float model on the held-out pairs", "",
             "10-fold protocol of the pairs file (its folds); accuracy at the best threshold of the other folds.", ""]
    for key, fig in float_fig.items():
        lines.append(f"- {key}: accuracy {100 * fig['accuracy']:.2f} +- {100 * fig['accuracy_std']:.2f} %, "
                     f"TAR {', '.join(f'{100 * v:.1f} % at FAR {k}' for k, v in fig['tar_at_far'].items())}, "
                     f"EER {100 * fig['eer']:.2f} %")
    lines += ["", "## Every exported model on the same pairs", ""]
    with open(os.path.join(export_dir, "report.md")) as f:
        body = f.read().split("\n", 2)[2]
    lines += [body.replace("](", f"]({os.path.relpath(export_dir, ns.out)}/"), ""]
    lines += ["## int8: post-training vs QAT, per-channel vs per-tensor weight scales", "",
              "Post-training int8 takes its activation ranges from calibration faces; QAT fine-tunes the "
              "graph that ships (batch norm folded, PReLU in its int8 form) and ships the ranges it learned. "
              "Per-tensor weight scales (one per conv, `--per_tensor true`) are what some accelerators and "
              "NNAPI/DSP drivers take; depthwise convs lose most there, and QAT wins it back.", "",
              *int8_markdown(exp_report["int8"])[2:]]
    if bench:
        lines += ["## Benchmark (LiteRT interpreter, XNNPACK, batch 1)", "",
                  "| format | size (MB) | p50 1 thread (ms) | p50 2 threads (ms) | p90 2 threads (ms) | ops not on XNNPACK |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['format']} | {r['size_mb']:.2f} | {r['p50_1']:.2f} | {r['p50_2']:.2f} | {r['p90_2']:.2f} | "
                  f"{', '.join(f'{op} x{n}' for op, n in Counter(r['not_delegated']).items()) or 'none'} |"
                  for r in bench]
    lines += ["", "## Do the same on your data", "", "```",
              f"python -m mfn_tf2.train YOUR_FACES/ LFW/ LFW/pairs.txt --recipe {ns.recipe} --save_model_directory weights/",
              "python -m mfn_tf2.export weights/ --out export/mine --train_directory YOUR_FACES/ "
              "--pairs_filename LFW/pairs.txt --data_directory LFW/",
              "python -m mfn_tf2.benchmark export/mine/*.tflite --threads 1,2,4", "```", "",
              "On a GPU machine drop the CPU recipe and use the seed defaults on all GPUs: "
              "`python -m mfn_tf2.train FACES/ LFW/ LFW/pairs.txt --preset paper --gpu 0,1 --mixed_precision auto`.",
              "", "Data: Labeled Faces in the Wild (Huang et al., 2007), see data/README.md.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
