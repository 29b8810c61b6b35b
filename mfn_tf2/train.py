"""Train MobileFaceNet + ArcFace on a folder of face folders (one folder per person).

    # two CPU cores, LFW's training identities (lfw/train), checked every epoch on the held-out pairs
    python -m mfn_tf2.train lfw/train lfw/heldout lfw/pairs_heldout.txt --preset paper \\
        --batch_size 64 --epochs 2 --evaluate_epochs 1 --save_model_directory weights/

    # all GPUs of a machine (MirroredStrategy), bfloat16/float16 where the hardware has it
    python -m mfn_tf2.train faces/ lfw/ lfw/pairs.txt --gpu 0,1 --mixed_precision auto

    # several machines: the same command on each, with its own TF_CONFIG (see README)
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}' \\
        python -m mfn_tf2.train shards/ lfw/ lfw/pairs.txt --strategy multi_worker

Started again with the same ``--save_model_directory`` it resumes from the
newest checkpoint. A ``pairs_filename`` that does not exist is generated from
``data_directory`` (``--sample_type``), saved under that name and used, as the
original Keras train script did (a line says so); "none" generates them in
memory each run (the same ones for the same ``--seed``), saved nowhere; both
"none" to check only insightface .bin sets:

    # MS1M-ArcFace (insightface's faces_emore folder), checked on its three .bin sets
    python -m mfn_tf2.train faces_emore/ none none --preset mbf --verification_sets \\
        faces_emore/lfw.bin,faces_emore/cfp_fp.bin,faces_emore/agedb_30.bin --best_by agedb_30
"""
from __future__ import annotations

import argparse

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.fileio import OutputError
from mfn_tf2.training import run

CONFIGS = {"model": C.ModelConfig, "data": C.DataConfig, "eval": C.EvalConfig, "train": C.TrainConfig}


def build_parser(recipe: str = "keras_original", preset: str | None = None) -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.train``.

    Defaults come from the ``recipe`` (a whole run), the model's from ``preset`` when given.
    """
    p = cli.shell_parser("train", __doc__)
    p.add_argument("train_directory", help="identity folders (or a shard folder from `mfn_tf2.data pack`, "
                   "or an insightface folder with train.rec)")
    p.add_argument("data_directory", help="root the verification pairs resolve under ('none' with "
                   "pairs 'none': only --verification_sets)")
    p.add_argument("pairs_filename", help="verification pairs (LFW pairs.txt or 'path1 path2 label'); "
                   "a file that does not exist is generated from data_directory (--sample_type) "
                   "and saved there; 'none' generates pairs without saving them")
    p.add_argument("--recipe", choices=sorted(C.RECIPES), default="keras_original",
                   type=cli.named(C.RECIPES, "--recipe"),
                   help="settings of a whole run to start from (keras_original: the original Keras "
                        "implementation's defaults; cpu_demo: learns in minutes on a CPU); flags override it "
                        "(default: keras_original)")
    cli.add_preset_flag(p, without="the recipe's model: keras_original's with the default recipe")
    groups = {"model": "model", "data": "data generator", "eval": "evaluation (the periodic check)",
              "train": "training"}
    chosen = C.RECIPES[recipe]
    defaults = {"model": cli.preset_defaults(preset, chosen.model), "data": chosen.data,
                "eval": None, "train": chosen.train}
    for key, cls in CONFIGS.items():
        cli.add_config_flags(p.add_argument_group(groups[key]), cls,
                             skip=("train_directory", "data_directory", "pairs_filename"),
                             defaults=defaults[key])
    return p


def parse(argv=None) -> dict:
    """Parses argv into {"model", "data", "eval", "train"} configs (preset applied)."""
    known = cli.pre_parse(argv, recipe=(C.RECIPES, "keras_original"), preset=cli.PRESET)
    parser = build_parser(known.recipe, known.preset)
    ns = parser.parse_args(argv)
    pairs = None if ns.pairs_filename.lower() == "none" else ns.pairs_filename
    data_directory = "" if ns.data_directory.lower() == "none" else ns.data_directory
    if not (data_directory or ns.verification_sets):
        parser.error("data_directory none: give pairs to check, or --verification_sets")
    return cli.build_configs(parser, ns, CONFIGS, data={"train_directory": ns.train_directory},
                             eval={"data_directory": data_directory, "pairs_filename": pairs})


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.train``."""
    cfg = parse(argv)
    try:
        result = run(cfg["model"], cfg["data"], cfg["eval"], cfg["train"])
    except (ValueError, OutputError, FloatingPointError) as err:  # DataError, CheckpointError, ...
        cli.fail(str(err))
    print(f"done: {result['epochs_done']} epochs in {cfg['train'].save_model_directory}"
          + (f" (stopped by the {result['stopped']})" if result["stopped"] else ""))


if __name__ == "__main__":
    main()
