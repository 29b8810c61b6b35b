"""How fast are my models? LiteRT latency, batch throughput, delegation, and training speed.

    # p50/p90/p99 latency at batch 1 on 1, 2 and 4 threads, throughput at batch 32, XNNPACK coverage
    python -m mfn_tf2.benchmark export/demo/model_fp32.tflite export/demo/model_int8.tflite \\
        --threads 1,2,4 --images data/lfw_demo/heldout --json bench.json --markdown bench.md

    # a SavedModel: images/s at batch 32 on TensorFlow
    python -m mfn_tf2.benchmark export/demo/saved_model --batch 32

    # training images/s at batch 64, synthetic data (1000 classes): fp32, then bfloat16
    python -m mfn_tf2.benchmark --train --preset paper
    python -m mfn_tf2.benchmark --train --preset paper --mixed_precision bfloat16

    # training on real faces, and the input pipeline alone: which one limits you?
    python -m mfn_tf2.benchmark --train --preset mbf --train_directory data/lfw_demo/train

Latency times ``invoke()`` only, after ``--warmup`` untimed runs; training is
timed over ``--train_steps`` optimizer steps after ``--train_warmup`` steps
(the first traces the graph). Other programs using the CPU slow every figure:
the header records the load average before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.benchmarking import BenchConfig, run
from mfn_tf2.fileio import write_json, write_text
from mfn_tf2.reports import render_markdown, render_text

# TrainConfig fields that change training speed; the rest get no flag here.
_TRAIN_FIELDS = ("optimizer", "mixed_precision")


def build_parser(preset: str = "keras_original") -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.benchmark``; model defaults come from ``preset``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.benchmark", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("models", nargs="*", metavar="MODEL", help=".tflite files and SavedModel folders")
    b = BenchConfig  # its defaults are the flags'
    p.add_argument("--threads", type=cli.number_list(int), default=b.threads,
                   help=f"LiteRT thread counts, comma-separated (default: {','.join(map(str, b.threads))})")
    p.add_argument("--runs", type=int, default=b.runs, help=f"timed invocations per setting (default: {b.runs})")
    p.add_argument("--warmup", type=int, default=b.warmup, help=f"untimed invocations first (default: {b.warmup})")
    p.add_argument("--batch", type=int, default=b.batch, help=f"batch of the throughput runs (default: {b.batch})")
    p.add_argument("--images", help="folder of real faces to feed (default: smooth random images)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--markdown", help="also write the report as a markdown table here")
    t = p.add_argument_group("training speed (--train)")
    t.add_argument("--train", action="store_true", help="measure training images/s of the model flags")
    t.add_argument("--preset", choices=sorted(C.MODEL_PRESETS), default="keras_original",
                   type=cli.named(C.MODEL_PRESETS, "--preset"),
                   help="model configuration to start from; model flags override it (default: keras_original)")
    t.add_argument("--train_steps", type=int, default=b.train_steps,
                   help=f"timed optimizer steps (default: {b.train_steps})")
    t.add_argument("--train_warmup", type=int, default=b.train_warmup,
                   help=f"untimed steps first (default: {b.train_warmup})")
    t.add_argument("--classes", type=int, default=b.classes,
                   help=f"identities of the synthetic data (default: {b.classes})")
    t.add_argument("--pipeline_batches", type=int, default=b.pipeline_batches,
                   help=f"batches timed of the input pipeline alone (default: {b.pipeline_batches})")
    cli.add_config_flags(p.add_argument_group("model"), C.ModelConfig, defaults=C.MODEL_PRESETS[preset])
    cli.add_config_flags(p.add_argument_group("data (empty --train_directory: synthetic)"), C.DataConfig,
                         defaults=C.replace(C.DataConfig(), batch_size=64))
    others = [f.name for f in dataclasses.fields(C.TrainConfig) if f.name not in _TRAIN_FIELDS]
    cli.add_config_flags(p.add_argument_group("training"), C.TrainConfig, skip=others)
    return p


def _check_args(parser, ns) -> None:
    """Rejects impossible counts, and no model nor --train, before any work starts."""
    # flag -> (value, smallest allowed)
    counts = {"--runs": (ns.runs, 1), "--batch": (ns.batch, 1), "--train_steps": (ns.train_steps, 1),
              "--pipeline_batches": (ns.pipeline_batches, 1), "--classes": (ns.classes, 1),
              "--warmup": (ns.warmup, 0), "--train_warmup": (ns.train_warmup, 0),
              "--threads": (min(ns.threads, default=0), 1)}
    for flag, (value, least) in counts.items():
        if value < least:
            parser.error(f"{flag} {value}: must be at least {least}")
    if not ns.models and not ns.train:
        parser.error("give at least one MODEL (.tflite file or SavedModel folder), or --train")


def bench_config(ns: argparse.Namespace) -> BenchConfig:
    """The BenchConfig of the parsed flags."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(BenchConfig)}
    return BenchConfig(**dict(values, models=tuple(ns.models), threads=tuple(ns.threads)))


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.benchmark``."""
    parser = build_parser(cli.pre_parse(argv, preset=(C.MODEL_PRESETS, "keras_original")).preset)
    args = parser.parse_args(argv)
    _check_args(parser, args)
    configs = cli.build_configs(parser, args, {"model": C.ModelConfig, "data": C.DataConfig,
                                               "train": C.TrainConfig})
    try:  # run checks every model path first: a typo fails before TensorFlow loads, with one line
        report = run(bench_config(args), configs, log=lambda text: print(text, file=sys.stderr))
        print(render_text(report), end="")
        if args.json:
            write_json(args.json, report)
        if args.markdown:
            write_text(args.markdown, render_markdown(report))
    except (ValueError, FloatingPointError) as err:  # LatencyError, DataError, ImageError, ...
        cli.fail(str(err).splitlines()[0])
    except OSError as err:
        cli.fail(f"{err.filename or ''}: cannot write the report ({err.strerror})")


if __name__ == "__main__":
    main()
