"""Measures the kit's figures in one run and writes docs/benchmarks.md from their JSON.

    python benchmarks/benchmark_docs.py                      # latency + training speed (~10 min, 2 cores)
    python benchmarks/benchmark_docs.py --demo demo_out      # and the demo's accuracy, paired tests, thresholds
    python benchmarks/benchmark_docs.py --torch              # and the same network's training step in PyTorch
    python benchmarks/benchmark_docs.py --prelu WORK         # and per-channel vs shared PReLU over seeds
                                                             # (trains what WORK lacks: ~15 min per run)

Every figure of docs/benchmarks.md comes from this script: each table is headed
by the host it ran on (CPU model, int8 / bf16 instructions, cores, versions) and
the command that made it, and every comparison in it (int8 against fp32, the
kit against MobileNetV2 and against PyTorch) is made within this one run. The
raw JSON of each measurement is written beside it (``--work``). Figures from
another machine or another day are not comparable: run the script again there.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from mfn_tf2.machine import machine_info, machine_line

import prelu_accuracy  # beside this script (its folder leads sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Training-speed settings: the paper network at its 112 px, and the demo recipe's 64 px model.
TRAIN_SETTINGS = {
    "paper MobileFaceNet, 112 px, batch 64, synthetic faces, 1000 classes":
        ["--preset", "paper", "--train_steps", "10"],
    "demo recipe: 64 px, batch 128, the bundled faces, 1334 classes":
        ["--preset", "paper", "--image_size", "64", "--batch_size", "128", "--classes", "1334",
         "--train_steps", "10", "--train_directory", "data/lfw_demo/train"],
}


def run(cmd: list[str], log) -> str:
    """Runs one command from the repository root; its stdout, or exits naming the command."""
    shown = command(cmd)
    log(f"$ {shown}")
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {shown} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def command(cmd: list[str]) -> str:
    """How a table's command is printed: relative paths, ``python`` for this interpreter."""
    return " ".join("python" if c == sys.executable else os.path.relpath(c, REPO) if os.path.isabs(c) else c
                    for c in cmd)


def latency_section(work: str, rounds: int, log) -> list[str]:
    """int8 / fp32 latency of the paper network (per-channel, islands, shared PReLU) and MobileNetV2, 112 and 64 px."""
    lines = []
    for size in (112, 64):
        out = os.path.join(work, f"latency_{size}.json")
        cmd = [sys.executable, "benchmarks/int8_latency_models.py", os.path.join(work, f"files_{size}"),
               "--size", str(size), "--rounds", str(rounds), "--json", out]
        run(cmd, log)
        with open(out) as f:
            report = json.load(f)
        lines += [f"Command: `python benchmarks/int8_latency_models.py OUT --size {size} --rounds {rounds}` "
                  f"(load before / after: {report['machine']['load_average']} / {report['load_after']})", "",
                  f"| network ({size} px, batch 1, XNNPACK) | threads | fp32 min / p50 (ms) | int8 min / p50 (ms) "
                  "| int8 / fp32 (min / p50) |", "| --- | --- | --- | --- | --- |"]
        for r in report["rows"]:
            a, b, q = r["fp32"], r["int8"], r["ratio"]
            lines.append(f"| {r['network']} | {r['threads']} | {a['min']:.2f} / {a['p50']:.2f} "
                         f"| {b['min']:.2f} / {b['p50']:.2f} | {q['min']:.2f}x / {q['p50']:.2f}x |")
        lines.append("")
    return lines + [
        "`paperS_channel`: the paper's per-channel PReLU in its exact all-int8 form (`model_int8.tflite`, "
        "`model_qat_int8.tflite`); `paperS_shared`: "
        "`--prelu shared` (one slope per layer, int8 LEAKY_RELU); `paperS_islands`: the per-channel network with "
        "int8 pointwise convs and its PReLUs and depthwise convs left in float between them (export's "
        "`model_int8_islands.tflite`, which ships when it is not distinguishably less accurate than float); "
        "`mobilenetv2_S`: Keras MobileNetV2 (alpha 1.0, ReLU6), the host's own bound for what XNNPACK's int8 gains over fp32. Untrained weights with trained-looking "
        "statistics: latency depends on the graph, not on the values. `min` is the fastest invocation, `p50` the "
        "median of the rounds' medians; the files are timed in interleaved rounds, so other work slows all alike."]


def training_section(work: str, log) -> list[str]:
    """Training images/s of the kit for each of ``TRAIN_SETTINGS``."""
    lines = ["| setting | command | images/s | ms per step | precision |", "| --- | --- | --- | --- | --- |"]
    for i, (what, flags) in enumerate(TRAIN_SETTINGS.items()):
        out = os.path.join(work, f"train_{i}.json")
        cmd = [sys.executable, "-m", "mfn_tf2.benchmark", "--train", *flags, "--json", out]
        run(cmd, log)
        with open(out) as f:
            t = json.load(f)["training"]
        lines.append(f"| {what} | `{command(cmd[:-2])}` | {t['images_per_second']:.1f} | {t['step_ms']:.0f} "
                     f"| {t['precision']} |")
    return lines


def torch_section(log) -> list[str]:
    """The paper network's training step in plain PyTorch (own venv), same settings as the first row above."""
    out = run(["sh", "benchmarks/torch_reference.sh", "--steps", "10"], log).strip().splitlines()[-1]
    return ["Command: `benchmarks/torch_reference.sh --steps 10` (PyTorch CPU in its own venv; never a kit "
            "dependency), the same network, loss and step as the first training row:", "", f"    {out}"]


def demo_section(demo: str) -> list[str]:
    """The demo's accuracy table with paired tests and its shipped file's thresholds, from its report.json."""
    with open(os.path.join(demo, "export", "report.json")) as f:
        rep = json.load(f)
    lines = [f"From `{os.path.join(os.path.relpath(demo, REPO), 'export', 'report.json')}`, written by "
             "`python -m mfn_tf2.demo` (`make demo`) on this host:", "",
             "| model | accuracy (%) | against float, pair by pair |", "| --- | --- | --- |"]
    for m in rep["models"]:
        paired = (m.get("paired") or {}).get("text", "(reference)")
        lines.append(f"| {m['format']} | {100 * m['report']['accuracy']:.2f} | {paired} |")
    shipped = rep.get("threshold") or {}
    lines += ["", f"Thresholds of `{shipped.get('file', '?')}` (the file an app ships), measured on every pair of "
              f"`{shipped.get('measured_on', '?')}` (relative to the export folder):", "",
              "| FAR target | cosine | FAR met (95 % CI) | TAR (95 % CI) | impostor / genuine pairs |",
              "| --- | --- | --- | --- | --- |"]
    for p in rep.get("thresholds", []):
        if p["file"] != shipped.get("file"):
            continue
        if not p["measurable"]:
            lines.append(f"| {p['far']:g} | not measurable with {p['impostor_pairs']:,} impostor pairs | | | |")
            continue
        lo, hi = p["far_ci95"]
        tlo, thi = p["tar_ci95"]
        lines.append(f"| {p['far']:g} | {p['cosine']:.4f} | {p['far_measured']:.2e} ({lo:.1e}-{hi:.1e}) "
                     f"| {100 * p['tar']:.1f} % ({100 * tlo:.1f}-{100 * thi:.1f}) "
                     f"| {p['impostor_pairs']:,} / {p['genuine_pairs']:,} |")
    return lines


def prelu_section(work: str, seeds: str, log) -> list[str]:
    """Accuracy of per-channel against shared PReLU slopes over seeds, paired, from prelu_accuracy.py."""
    out = os.path.join(work, "prelu.json")
    run([sys.executable, "benchmarks/prelu_accuracy.py", work, "--seeds", seeds, "--json", out], log)
    with open(out) as f:
        report = json.load(f)
    return [f"Command: `{report['command']}`: the demo recipe trained once per seed and form, each final float "
            "model scored on the 1,200 held-out pairs, and each form compared with per-channel slopes on the same "
            "pairs (exact McNemar).", ""] + prelu_accuracy.markdown(report)


def main(argv=None) -> None:
    """Entry point: measure, then write docs/benchmarks.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", metavar="DIR", help="a finished demo folder (make demo writes demo_out)")
    p.add_argument("--torch", action="store_true", help="also time the PyTorch reference (installs torch once)")
    p.add_argument("--prelu", metavar="WORK", help="runs of benchmarks/prelu_accuracy.py (reused; missing ones "
                   "are trained)")
    p.add_argument("--seeds", default="0,1", help="seeds of --prelu (default: 0,1)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds (default: 10)")
    p.add_argument("--work", help="where the JSON of each measurement goes (default: a temporary folder)")
    p.add_argument("--out", default=os.path.join(REPO, "docs", "benchmarks.md"))
    ns = p.parse_args(argv)
    work = ns.work or tempfile.mkdtemp(prefix="mfn_benchmarks_")
    os.makedirs(work, exist_ok=True)
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    host = machine_info()
    versions = ", ".join(f"{k} {v}" for k, v in host["versions"].items() if v)
    head = ["# Benchmarks", "", "Written by `python benchmarks/benchmark_docs.py` (its docstring says how); every "
            "figure below was measured in the same run on this host. Run it again to measure yours.", "",
            f"Host: {machine_line(host)}; {versions}; malloc: {host['malloc']}.", ""]
    body = ["## int8 against fp32 (LiteRT, batch 1)", ""] + latency_section(work, ns.rounds, log)
    body += ["", "## Training speed", ""] + training_section(work, log)
    if ns.torch:
        body += [""] + torch_section(log)
    if ns.prelu:
        body += ["", "## Per-channel or shared PReLU slopes: accuracy", ""] + prelu_section(ns.prelu, ns.seeds, log)
    if ns.demo:
        body += ["", "## The demo: accuracy, paired tests, thresholds", ""] + demo_section(ns.demo)
    with open(ns.out, "w") as f:
        f.write("\n".join(head + body) + "\n")
    print(f"wrote {os.path.relpath(ns.out, REPO)} (measurements in {work})")


if __name__ == "__main__":
    main()
