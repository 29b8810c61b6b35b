"""What the kit prints and writes: the report tables, each headed by the machine it was measured on.

Tables: the export report (``export_markdown``, ``int8_summary`` /
``int8_markdown``), the benchmark report (``render_text`` /
``render_markdown``) and the demo report (``demo_markdown``). Pure functions
of the result dicts the runners return; nothing here measures. The machine
(``machine_info``, ``machine_line``) is described by ``mfn_tf2.machine``.

Example:
    >>> machine_line({"cpu": "AMD EPYC", "isa": "int8: AVX2 only (no VNNI); bf16: none", "cores": 2})
    'AMD EPYC (int8: AVX2 only (no VNNI); bf16: none), 2 cores'
"""
from __future__ import annotations

import os

from mfn_tf2 import config as C
from mfn_tf2.calibration import METHODS, thresholds_markdown
from mfn_tf2.fileio import size_mb
from mfn_tf2.machine import machine_info, machine_line  # machine_info: benchmarking and exporting take it from here
from mfn_tf2.verification import markdown_table


def int8_summary(result: dict, names: list[str], latency: dict, exp: C.ExportConfig, calibration: str) -> list[dict]:
    """Per int8 model: accuracy against float with its paired test, cosine, latency ratio to fp32, where
    its ranges came from.

    Args:
        result: ``verify_models``' result (first model: the float reference).
        names: the format of each model in ``result`` ("float (Keras)", "fp32", "int8", ...).
        latency: {format: {threads: p50 ms}}.
        exp: the export settings (weight scales, QAT epochs).
        calibration: what calibrated post-training int8 ("200 faces from faces/").
    """
    from mfn_tf2.tflite import RANGES  # lazy: keeps TensorFlow out of benchmark's --help (it imports reports)
    ref = result["models"][0]["report"]["accuracy"]
    ranges = {"calibration": f"calibration ({calibration})",
              "QAT": f"QAT ({exp.qat_epochs:g} epoch(s), lr {exp.qat_learning_rate:g})"}
    rows = []
    for name, m in zip(names, result["models"]):
        if name not in RANGES:
            continue
        fp32, own = latency.get("fp32", {}), latency.get(name, {})
        rows.append({"format": name, "weight_scales": "per-tensor" if exp.per_tensor else "per-channel",
                     "ranges": ranges[RANGES[name]], "accuracy": m["report"]["accuracy"],
                     "accuracy_change_points": 100 * (m["report"]["accuracy"] - ref), "paired": m["paired"],
                     "cosine_mean": m["agreement"]["mean"], "cosine_min": m["agreement"]["min"],
                     "latency_ratio_to_fp32": {t: round(own[t] / fp32[t], 3) for t in own if fp32.get(t)}})
    return rows


def int8_markdown(rows: list[dict]) -> list[str]:
    """The report's int8 table (empty without int8 models)."""
    if not rows:
        return []
    lines = ["## int8 models", "", "| model | weight scales | ranges from | accuracy (%) | vs float (paired test) | "
             "cosine to float (mean / min) | latency / fp32 (1 / 2 threads) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = " / ".join(f"{v:.2f}x" for v in r["latency_ratio_to_fp32"].values()) or "-"
        lines.append(f"| {r['format']} | {r['weight_scales']} | {r['ranges']} | {100 * r['accuracy']:.2f} | "
                     f"{r['paired']['text']} | {r['cosine_mean']:.4f} / {r['cosine_min']:.4f} | {ratio} |")
    return lines + [""]


def thresholds_section(threshold: dict | None, thresholds: list[dict]) -> list[str]:
    """report.md's thresholds: every file's table and the recommended operating point for apps."""
    if not thresholds:
        return ["## Thresholds", "", "None measured: no exported file could be opened.", ""]
    first = thresholds[0]
    return ["## Thresholds (each file's own scores)", "",
            f"Every pair of `{first['measured_on']}` (relative to the export folder): {first['impostor_pairs']:,} "
            f"different-person and {first['genuine_pairs']:,} same-person pairs. FAR interval: "
            f"{METHODS['far_interval']}; TAR interval: {METHODS['tar_interval']}.", "",
            *thresholds_markdown(thresholds), "",
            f"Recommended for apps: `{threshold['file']}`, same person when cosine >= **{threshold['cosine']:.4f}** "
            f"(FAR {threshold['far']:g}, TAR {100 * threshold['tar']:.2f} %). Why this file: {threshold['why']}. "
            "`metadata.json` -> `threshold`; every file's points are in `thresholds`.", ""]


def export_markdown(out: str, source: str, result: dict, names: list[str], files: dict, parity: list[dict],
                    latency: dict, not_on_xnnpack: dict, threshold: dict | None, thresholds: list[dict],
                    failed: dict, int8: list[dict], machine: dict) -> str:
    """report.md: the verification table (with each model's paired test against float), the int8 table,
    the thresholds, files with sizes, latency and the ops XNNPACK left out, parity verdicts."""
    lines = [f"# Export report: {out}", "", f"Source: `{source}`. Pairs: `{result['pairs']['source']}` "
             f"({result['pairs']['n_pairs']} pairs, {result['pairs']['n_images']} images). "
             f"Latency measured on {machine_line(machine)}.", "",
             "## Verification (10-fold protocol of the pairs file; cosine scores)", "",
             markdown_table(result, names), "",
             "Paired test: each pair right or wrong at the threshold of the other folds; the exact McNemar "
             "test on the pairs two models decide differently says whether the accuracy difference is chance.", "",
             "![ROC curves and score histograms](roc.png)", "",
             *int8_markdown(int8), *thresholds_section(threshold, thresholds),
             "## Files", "", "Latency: LiteRT with XNNPACK, batch 1, median of the timed runs.", "",
             "| format | file | size (MB) | p50 1 thread (ms) | p50 2 threads (ms) | ops not on XNNPACK | parity |",
             "|---|---|---|---|---|---|---|"]
    verdict = {os.path.basename(p["model"]): ("ok" if p["ok"] else f"FAIL: {p['why']}") for p in parity}
    for fmt, path in files.items():
        size = size_mb(path)
        lat = latency.get(fmt, {})
        left = (", ".join(not_on_xnnpack[fmt]) or "none") if fmt in not_on_xnnpack else "-"  # "-": not timed
        lines.append(f"| {fmt} | {os.path.basename(path)} | {size:.2f} | {lat.get(1, '-')} | {lat.get(2, '-')} | "
                     f"{left} | {verdict.get(os.path.basename(path), 'reference')} |")
    for fmt, why in failed.items():
        lines.append(f"| {fmt} | {C.EXPORT_FILES[fmt]} | - | - | - | - | FAIL: {why} |")
    return "\n".join(lines + [""])


# The pipeline must outrun training by this factor not to slow it (both share the CPU).
_PIPELINE_HEADROOM = 3.0


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rate(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The result table: (header, rows of strings), one row per model and thread count."""
    header = ["model", "kind", "MB", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms",
              f"img/s @{report['settings']['batch']}", "ops", "not on XNNPACK"]
    table = []
    for m in report["models"]:
        slow = m.get("not_delegated")
        for r in m["runs"]:
            table.append([m["model"], m["kind"],
                          f"{m['size_mb']:.2f}" if "size_mb" in m else "-", str(r.get("threads", "tf")),
                          _ms(r.get("p50")), _ms(r.get("p90")), _ms(r.get("p99")), _ms(r.get("mean")),
                          _rate(r["throughput"]), "-" if m.get("ops") is None else str(m["ops"]),
                          "-" if slow is None else (", ".join(slow) or "none")])
    return header, table


def summary_lines(report: dict) -> list[str]:
    """The header and training lines shared by the text and markdown outputs."""
    mach, s = report["machine"], report["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v)
    lines = [f"machine: {machine_line(mach)} ({mach['usable_cores']} usable), "
             f"load {mach['load_average']} -> {report['load_after']}",
             f"versions: {versions}; malloc: {mach['malloc']}"]
    threads = [f"LiteRT {','.join(map(str, s['threads']))}"] if report["models"] else []
    if "tf_intra_op" in s:
        threads.append(f"TensorFlow intra-op {s['tf_intra_op'] or 'default'}, "
                       f"inter-op {s['tf_inter_op'] or 'default'}")
    if threads:
        lines.append("threads: " + "; ".join(threads))
    if "pipeline" in report:
        p = report["pipeline"]
        lines.append(f"input pipeline: {p['images_per_second']:.1f} images/s at batch {p['batch_size']} "
                     f"on {p['data']} (no model; {100 * p['cpu_share']:.0f}% of the cores)")
    if "training" in report:
        t = report["training"]
        lines.append(f"training: {t['images_per_second']:.1f} images/s at batch {t['batch_size']} "
                     f"on {t['data']} ({t['precision']}, {t['optimizer']}, "
                     f"{t['macs_per_image'] / 1e6:.0f} M MACs/img, {t['step_ms']:.0f} ms/step, "
                     f"{100 * t['cpu_share']:.0f}% of the cores)")
    if "pipeline" in report and "training" in report:
        # Per CPU-second: both share the cores, and other programs may take a
        # different share of them during each measurement.
        pipe, train = report["pipeline"], report["training"]
        ratio = pipe["images_per_cpu_second"] / train["images_per_cpu_second"]
        limit = "compute" if ratio >= _PIPELINE_HEADROOM else "the input pipeline (decoding)"
        lines.append(f"per CPU-second the pipeline does {ratio:.1f}x the images training does (decoding "
                     f"costs about {100 / ratio:.0f}% of the training CPU time): {limit} limits training")
    return lines


def render_text(report: dict) -> str:
    """The report as an aligned plain-text table for the terminal."""
    header, table = rows(report)
    widths = [max(len(c) for c in col) for col in zip(header, *table)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    body = [line(header), line(["-" * w for w in widths])] + [line(r) for r in table] if table else []
    return "\n".join(summary_lines(report) + [""] + body) + "\n"


def render_markdown(report: dict) -> str:
    """The report as markdown: a bullet list header and a table."""
    header, table = rows(report)
    lines = ["# mfn_tf2 benchmark", ""] + [f"- {line}" for line in summary_lines(report)]
    if table:
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in table]
    return "\n".join(lines) + "\n"


def demo_markdown(*, recipe: str, model: C.ModelConfig, epochs: int, float_fig: dict, export_md: str,
                  export_link: str, exp_report: dict, per_tensor_report: dict | None, metadata: dict,
                  machine: dict) -> str:
    """demo_out/report.md: what was trained, how well every model verifies, how fast it runs, what ships.

    Args:
        recipe: the training recipe's name.
        model: the model trained.
        epochs: the epochs it trained.
        float_fig: {"plain": figures, "flip": figures} of the float model on the held-out pairs
            (``verify_models``' "report" of each).
        export_md: the export's report.md (its title line is dropped).
        export_link: the export folder relative to report.md (the ROC image's links point into it).
        exp_report: the export's report.json.
        per_tensor_report: the per-tensor export's report.json, or None.
        metadata: the export's metadata.json (the recommended threshold and every file's).
        machine: ``machine_info()`` of the host the figures were measured on.

    Returns:
        The markdown text.
    """
    lines = ["# mfn_tf2 demo report", "",
             f"Machine: {machine_line(machine)}; TensorFlow "
             f"{machine['versions'].get('tensorflow')}, LiteRT {machine['versions'].get('ai-edge-litert')}. "
             f"Model: {model.arch}, {model.image_size}x{model.image_size} input, "
             f"{model.embedding_dim}-d embedding; recipe `{recipe}`, {epochs} epochs.", "",
             "## Float model on the held-out pairs", "",
             "10-fold protocol of the pairs file (its folds); accuracy at the best threshold of the other folds.", ""]
    for key, fig in float_fig.items():
        lines.append(f"- {key}: accuracy {100 * fig['accuracy']:.2f} +- {100 * fig['accuracy_std']:.2f} %, "
                     f"TAR {', '.join(f'{100 * v:.1f} % at FAR {k}' for k, v in fig['tar_at_far'].items())}, "
                     f"EER {100 * fig['eer']:.2f} %")
    lines += ["", "## Every exported model on the same pairs", ""]
    lines += [export_md.split("\n", 2)[2].replace("](", f"]({export_link}/"), ""]
    lines += ["## int8: post-training, QAT and float islands; per-channel vs per-tensor weight scales", "",
              "Post-training int8 takes its activation ranges from calibration faces; QAT fine-tunes the "
              "graph that ships (batch norm folded, PReLU in its int8 form) and ships the ranges it learned; "
              "int8_islands is calibrated like post-training int8 but leaves each per-channel PReLU and "
              "depthwise conv float between int8 pointwise convs (every op still on XNNPACK). "
              "Per-tensor weight scales (one per conv, `--per_tensor true`) are what some accelerators and "
              "NNAPI/DSP drivers take; depthwise convs are where they can cost accuracy, and QAT trains against "
              "them. The table says what each cost this model.", "",
              *int8_markdown(exp_report["int8"] + (per_tensor_report or {}).get("int8", []))[2:],
              "Each int8 file against the float model on the same pairs (each pair right or wrong at the "
              "threshold of the other folds; exact McNemar test on the pairs they decide differently):", ""]
    for scales, rep in (("per-channel", exp_report), ("per-tensor", per_tensor_report)):
        lines += [f"- `{C.EXPORT_FILES[r['format']]}` ({scales}): {r['paired']['text']}"
                  for r in (rep or {}).get("int8", []) if r.get("paired")]
    thr = metadata["threshold"]
    own = [t for t in metadata["thresholds"] if t["file"] == thr["file"]]
    lines += ["", "## What ships: the recommended operating point", "",
              f"`{thr['file']}` (`--android_assets` ships it as the app's model; why this file: {thr['why']}): "
              f"same person when cosine >= **{thr['cosine']:.4f}**, the threshold at FAR "
              f"{thr['far']:g}, TAR {100 * thr['tar']:.2f} %, measured on all {own[0]['impostor_pairs']:,} "
              f"different-person and {own[0]['genuine_pairs']:,} same-person pairs of `{thr['measured_on']}` "
              "(relative to the export folder). Its thresholds:", "",
              *thresholds_markdown([{k: v for k, v in t.items() if k != "file"} for t in own]), ""]
    lines += ["", "## Do the same on your data", "", "```",
              f"python -m mfn_tf2.train YOUR_FACES/ LFW/ LFW/pairs.txt --recipe {recipe} --save_model_directory weights/",
              "python -m mfn_tf2.export weights/ --out export/mine --train_directory YOUR_FACES/ "
              "--pairs_filename LFW/pairs.txt --data_directory LFW/",
              "python -m mfn_tf2.benchmark export/mine/*.tflite --threads 1,2,4", "```", "",
              "On a GPU machine drop the CPU recipe and use the original Keras implementation's defaults on all GPUs: "
              "`python -m mfn_tf2.train FACES/ LFW/ LFW/pairs.txt --preset paper --gpu 0,1 --mixed_precision auto`.",
              "", "Data: Labeled Faces in the Wild (Huang et al., 2007), see data/README.md.", ""]
    return "\n".join(lines)
