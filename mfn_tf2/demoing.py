"""The runner of ``python -m mfn_tf2.demo``: train, verify, export (timed on LiteRT) and report in one call.

``run(DemoConfig(...))`` trains MobileFaceNet + ArcFace with a recipe (``cpu_demo`` by default), verifies
the float model on the held-out pairs with and without flip, exports every format (int8_islands too, for a
per-channel PReLU model), verifies each on the same pairs and times it on LiteRT (``exporting.run``), exports
int8 PTQ and QAT again with per-tensor weight scales, writes the Android assets when asked and writes
``OUT/report.md`` (``reports.demo_markdown``; its latency figures are the export's, measured once). A step
whose files are newer than its inputs is skipped: a second run reuses the finished steps.

Example:
    >>> cfg = DemoConfig(out="demo_out", epochs=1, image_size=32)
    >>> stages = cfg.stages()
    >>> stages.model.image_size, stages.train.epochs, stages.train.save_model_directory
    (32, 1, 'demo_out/weights')
    >>> DemoConfig(qat_epochs=0)
    Traceback (most recent call last):
    ValueError: --qat_epochs 0: must be positive
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import NamedTuple

from mfn_tf2 import config as C
from mfn_tf2.android import AssetsError, write_assets
from mfn_tf2.calibration import list_faces
from mfn_tf2.embedders import FeatureExtractor
from mfn_tf2.fileio import OutputLock, write_text
from mfn_tf2.machine import machine_info
from mfn_tf2.reports import demo_markdown
from mfn_tf2.verification import load_pairs, verify_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, "data", "lfw_demo")
# Where ``make demo`` refreshes the app's assets (``--android_assets`` without a folder).
ANDROID_ASSETS = os.path.join(REPO, "android_demo_assets")


class Stages(NamedTuple):
    """The configs of the demo's steps, from one DemoConfig."""
    model: C.ModelConfig
    data: C.DataConfig
    eval: C.EvalConfig
    train: C.TrainConfig
    export: C.ExportConfig
    per_tensor: C.ExportConfig


@dataclass(frozen=True)
class DemoConfig:
    """One demo run; a value its steps' configs reject raises ValueError naming the flag.

    Args:
        data: training identity folders (also the int8 calibration images).
        heldout: root of the pairs' images; every pair of its faces measures the thresholds.
        pairs: the verification pairs file.
        out: the result folder (weights/, export/, export_per_tensor/, report.md).
        template: the 5-point layout of ``data``'s faces, named in metadata.json for apps.
        recipe: the training recipe (a name of ``config.RECIPES``).
        epochs: the recipe's epochs overridden, or None.
        image_size: the recipe's input size overridden, or None.
        width: the recipe's width overridden, or None.
        qat_epochs: quantization-aware fine-tuning epochs.
        android_assets: refresh this app assets folder from the export, or None.
    """
    data: str = os.path.join(BUNDLED, "train")
    heldout: str = os.path.join(BUNDLED, "heldout")
    pairs: str = os.path.join(BUNDLED, "pairs_heldout.txt")
    out: str = "demo_out"
    template: str = "lfw_a"
    recipe: str = "cpu_demo"
    epochs: int | None = None
    image_size: int | None = None
    width: float | None = None
    # Half an epoch: on the demo model QAT int8 scored as well as after a whole one, in half the time.
    qat_epochs: float = 0.5
    android_assets: str | None = None

    def __post_init__(self):
        self.stages()

    def stages(self) -> Stages:
        """The model, data, pairs, training and export configs of this run (the recipe's, overridden)."""
        if self.recipe not in C.RECIPES:
            raise ValueError(f"--recipe {self.recipe!r}: choose one of {', '.join(sorted(C.RECIPES))}")
        recipe = C.RECIPES[self.recipe]
        overrides = {"image_size": self.image_size, "width": self.width}
        export = C.ExportConfig(out=os.path.join(self.out, "export"), representative_dir=self.data,
                                qat_epochs=self.qat_epochs, template=self.template)
        return Stages(
            model=C.replace(recipe.model, **{k: v for k, v in overrides.items() if v is not None}),
            data=C.replace(recipe.data, train_directory=self.data),
            eval=C.EvalConfig(pairs_filename=self.pairs, data_directory=self.heldout, far_target=(1e-3, 1e-2)),
            train=C.replace(recipe.train, save_model_directory=os.path.join(self.out, "weights"),
                            **({} if self.epochs is None else {"epochs": self.epochs})),
            export=export,
            # compared, not gated: the parity bounds are for the files that ship
            per_tensor=C.replace(export, out=export.out + "_per_tensor", formats=("fp32", "int8", "qat_int8"),
                                 per_tensor=True, max_accuracy_drop=100.0, min_cosine=-1.0))


def step(title: str, done: bool, fn, log=print):
    """Runs one demo step unless ``done``; logs its one-line result and time.

    Args:
        title: the step's name.
        done: its files are there already: skip it.
        fn: the step: returns (result, one line saying how it went).
        log: takes each line.

    Returns:
        ``fn``'s result, or None when skipped.

    Example:
        >>> step("add", False, lambda: (3, "1 + 2 = 3"), log=lambda line: print(line.rsplit(" (", 1)[0]))
        [....] add
        [done] add: 1 + 2 = 3
        3
    """
    if done:
        log(f"[skip] {title}: already done (delete the folder to redo it)")
        return None
    log(f"[....] {title}")
    start = time.monotonic()
    result, line = fn()
    log(f"[done] {title}: {line} ({time.monotonic() - start:.0f} s)")
    return result


def run(cfg: DemoConfig, log=print) -> dict:
    """Runs every step of the demo into ``cfg.out``.

    Args:
        cfg: the run.
        log: takes each line (steps, training and export progress).

    Returns:
        {"report": the path of report.md, "float": {"plain", "flip"} figures of the float model}.

    Raises:
        ValueError (DataError, CalibrationError, ...): ``cfg.heldout`` cannot measure the thresholds
        (before training), bad training data, ``--android_assets`` that cannot be written.
        OutputError: ``cfg.out`` is in use or cannot be written.
    """
    from mfn_tf2 import exporting, training  # lazy: keeps TensorFlow out of python -m mfn_tf2.demo --help
    st = cfg.stages()
    weights, export_dir = st.train.save_model_directory, st.export.out
    saved_model = os.path.join(weights, "embedding_model", "saved_model.pb")
    # every pair of the held-out faces measures the thresholds: a folder too small fails before training
    list_faces(cfg.heldout, C.FAR_TARGETS, "--heldout")
    os.makedirs(cfg.out, exist_ok=True)
    with OutputLock(cfg.out):
        step(f"train ({cfg.recipe}: {st.model.arch} {st.model.image_size}px, {st.train.epochs} epochs)",
             os.path.exists(saved_model),
             lambda: (training.run(st.model, st.data, st.eval, st.train, log=log), "checkpoint in " + weights), log)
        pairs = load_pairs(st.eval)
        float_fig = step("verify the float model", False, lambda: _verify_float(weights, pairs, st.eval), log)
        report_json = os.path.join(export_dir, "report.json")
        # done: newer than the weights and of the formats asked now (an older export lacking a format is redone)
        exported = (os.path.exists(report_json) and os.path.getmtime(report_json) > os.path.getmtime(saved_model)
                    and _read_json(report_json).get("formats") == list(st.export.formats))
        step("export + verify every format", exported,
             lambda: _exported(exporting.run(weights, st.export, st.eval, st.data, log=log)), log)
        if cfg.android_assets:  # from this run's export: the files the report below describes
            step("android assets", False, lambda: _assets(export_dir, cfg.android_assets, pairs), log)
        per_tensor_json = os.path.join(st.per_tensor.out, "report.json")
        step("export + verify int8 with per-tensor weight scales", exported and os.path.exists(per_tensor_json),
             lambda: _exported(exporting.run(weights, st.per_tensor, st.eval, st.data, log=log)), log)
        exp_report = _read_json(report_json)
        with open(os.path.join(export_dir, "report.md")) as f:
            export_md = f.read()
        report = os.path.join(cfg.out, "report.md")
        write_text(report, demo_markdown(
            recipe=cfg.recipe, model=st.model, epochs=st.train.epochs, float_fig=float_fig, export_md=export_md,
            export_link=os.path.relpath(export_dir, cfg.out), exp_report=exp_report,
            per_tensor_report=_read_json(per_tensor_json),
            metadata=_read_json(os.path.join(export_dir, "metadata.json")), machine=machine_info()))
    return {"report": report, "float": float_fig}


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _verify_float(weights: str, pairs, eval_cfg: C.EvalConfig):
    """({"plain", "flip"}: the float model's figures on the pairs, without and with flip; a line)."""
    fig = {}
    for key, flip in (("plain", False), ("flip", True)):
        result = verify_models([FeatureExtractor(weights, flip=flip)], pairs, eval_cfg.far_target)
        fig[key] = result["models"][0]["report"]
    plain, flip = fig["plain"]["accuracy"], fig["flip"]["accuracy"]
    return fig, f"accuracy {100 * plain:.2f} % (with flip {100 * flip:.2f} %) on {len(pairs.labels)} held-out pairs"


def _exported(report: dict):
    """(an export's report, its line)."""
    verdict = "all formats within parity bounds" if report["ok"] else "PARITY FAILURE, see report"
    return report, f"{len(report['files'])} files, {verdict}"


def _assets(export_dir: str, folder: str, pairs):
    said = []
    try:
        write_assets(export_dir, folder, pairs, log=said.append)
    except AssetsError as err:
        raise AssetsError(f"--android_assets {folder}: {err}") from None
    return None, said[-1].removeprefix("android assets: ")
