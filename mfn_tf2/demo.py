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

from mfn_tf2 import cli
from mfn_tf2 import config as C
from mfn_tf2.demoing import ANDROID_ASSETS, DemoConfig, run
from mfn_tf2.fileio import OutputError


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m mfn_tf2.demo``; their defaults are DemoConfig's."""
    d = DemoConfig()
    p = cli.shell_parser("demo", __doc__)
    p.add_argument("--data", default=d.data, help="training identity folders")
    p.add_argument("--heldout", default=d.heldout, help="root of the pairs' images")
    p.add_argument("--pairs", default=d.pairs, help="verification pairs")
    p.add_argument("--out", default=d.out, help="result folder")
    p.add_argument("--template", default=d.template, choices=C.TEMPLATE_NAMES,
                   help="the 5-point layout of --data's faces, named in metadata.json for apps "
                        f"(default: {d.template}, the bundled LFW faces')")
    p.add_argument("--recipe", default=d.recipe, choices=sorted(C.RECIPES), type=cli.named(C.RECIPES, "--recipe"),
                   help=f"training recipe (default: {d.recipe})")
    p.add_argument("--epochs", type=int, default=d.epochs, help="override the recipe's epochs (tests: 1)")
    p.add_argument("--image_size", type=int, default=d.image_size, help="override the recipe's input size")
    p.add_argument("--width", type=float, default=d.width, help="override the recipe's width")
    p.add_argument("--qat_epochs", type=float, default=d.qat_epochs,
                   help=f"quantization-aware fine-tuning epochs (default: {d.qat_epochs:g})")
    p.add_argument("--android_assets", nargs="?", const=ANDROID_ASSETS, default=d.android_assets,
                   help="refresh this assets folder (default android_demo_assets/)")
    return p


def main(argv=None) -> None:
    """Entry point of ``python -m mfn_tf2.demo``."""
    parser = build_parser()
    cfg = cli.build_configs(parser, parser.parse_args(argv), {"demo": DemoConfig})["demo"]
    try:
        result = run(cfg, log=print)
    except (ValueError, OutputError, FloatingPointError) as err:  # DataError, CalibrationError, AssetsError, ...
        cli.fail(str(err))
    print(f"report: {result['report']}")


if __name__ == "__main__":
    main()
