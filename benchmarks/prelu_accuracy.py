"""What shared PReLU slopes cost: the demo recipe trained per seed with each slope form, paired.

    python benchmarks/prelu_accuracy.py WORK --seeds 0,1 --json WORK/prelu.json

Trains the demo recipe (``--recipe cpu_demo``: the bundled faces, 64 px, 15 epochs)
once per seed and slope form into ``WORK/<form>_<seed>/`` -- a finished run is
reused and an interrupted one resumes, so the command can be run again to add
seeds -- then scores each final float model (``embedding_model/``, not ``best/``,
which was chosen on these same pairs) on the 1,200 held-out pairs of
``data/lfw_demo/pairs_heldout.txt``. Each form is compared with per-channel
slopes seed by seed on the same pairs, and over all seeds pooled, with the exact
McNemar test the kit reports everywhere (``stats.paired_difference``). A training
takes about 15 minutes on two quiet cores.

The question it answers: is the faster int8 form (one shared slope per layer,
which int8 runs as LEAKY_RELU) distinguishably less accurate than the paper's
per-channel slopes? A difference the test calls chance means "not known to be
worse at this many pairs", not "equal".
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

from mfn_tf2 import metrics, stats
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.machine import machine_info
from mfn_tf2.pairs import read_pairs
from mfn_tf2.verification import verify_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data", "lfw_demo")
REFERENCE = "channel"  # the paper's form: every other form is compared with it


def train(work: str, form: str, seed: int, log) -> str:
    """Trains (or resumes, or reuses) one run; returns its final SavedModel folder."""
    run_dir = os.path.join(work, f"{form}_{seed}")
    model = os.path.join(run_dir, "embedding_model")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        log(f"training {form} seed {seed} into {run_dir}")
        cmd = [sys.executable, "-m", "mfn_tf2.train", os.path.join(DATA, "train"), os.path.join(DATA, "heldout"),
               os.path.join(DATA, "pairs_heldout.txt"), "--recipe", "cpu_demo", "--seed", str(seed),
               "--prelu", form, "--save_model_directory", run_dir]
        with open(run_dir + ".log", "a") as out:
            if subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode:
                sys.exit(f"error: training {form} seed {seed} failed; see {run_dir}.log")
    return model


def compare(work: str, seeds: list[int], forms: list[str], log) -> dict:
    """Scores every run on the held-out pairs; paired tests against per-channel, per seed and pooled.

    Returns:
        {"runs": [{"seed", "form", "accuracy"}], "paired": [{"seed", "form", **paired_difference}],
        "pooled": [{"form", **paired_difference over all seeds' pairs}]}.
    """
    pairs = read_pairs(os.path.join(DATA, "pairs_heldout.txt"), os.path.join(DATA, "heldout"))
    runs, paired, correct = [], [], {form: [] for form in forms}
    for seed in seeds:
        models = [train(work, form, seed, log) for form in forms]
        result = verify_models([FeatureExtractor(m) for m in models], pairs)
        for form, scored in zip(forms, result["models"]):
            # Right/wrong per pair at the 10-fold thresholds: what LFW accuracy counts.
            correct[form].append(metrics.kfold_correct(scored["scores"], pairs.labels, pairs.folds))
            runs.append({"seed": seed, "form": form, "accuracy": 100 * float(np.mean(correct[form][-1]))})
            if scored["paired"]:
                paired.append({"seed": seed, "form": form, **scored["paired"]})
            log(f"seed {seed} {form}: {runs[-1]['accuracy']:.2f} %  {(scored['paired'] or {}).get('text', '')}")
    pooled = [{"form": form, **stats.paired_difference(np.concatenate(correct[REFERENCE]),
                                                       np.concatenate(correct[form]))}
              for form in forms if form != REFERENCE]
    return {"runs": runs, "paired": paired, "pooled": pooled}


def markdown(report: dict) -> list[str]:
    """The docs table: accuracy per seed and form, then each paired test against per-channel."""
    forms = report["forms"]
    lines = ["| seed | " + " | ".join(forms) + " |", "| --- |" + " --- |" * len(forms)]
    for seed in report["seeds"]:
        acc = {r["form"]: r["accuracy"] for r in report["runs"] if r["seed"] == seed}
        lines.append(f"| {seed} | " + " | ".join(f"{acc[f]:.2f} %" for f in forms) + " |")
    means = {f: np.mean([r["accuracy"] for r in report["runs"] if r["form"] == f]) for f in forms}
    lines += ["| mean | " + " | ".join(f"{means[f]:.2f} %" for f in forms) + " |", ""]
    lines += [f"- seed {p['seed']}, {p['form']} against {REFERENCE}: {p['text']}" for p in report["paired"]]
    lines += [f"- all seeds pooled ({p['n_pairs']:,} pair decisions), {p['form']} against {REFERENCE}: {p['text']}"
              for p in report["pooled"]]
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", help="folder of the runs (WORK/<form>_<seed>/), reused across calls")
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds (0: the recipe's own)")
    p.add_argument("--forms", default="channel,shared", help="PReLU slope forms; the first is the reference")
    p.add_argument("--json", help="write the report here")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    forms = args.forms.split(",")
    if forms[0] != REFERENCE:
        p.error(f"--forms: the first form must be {REFERENCE} (the reference), got {forms[0]}")
    os.makedirs(args.work, exist_ok=True)
    report = {"host": machine_info(), "seeds": seeds, "forms": forms,
              "command": f"python benchmarks/prelu_accuracy.py WORK --seeds {args.seeds} --forms {args.forms}",
              **compare(args.work, seeds, forms, log=print)}
    print("\n".join(markdown(report)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
