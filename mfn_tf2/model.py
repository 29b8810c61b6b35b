"""Print the parameters and multiply-adds of a backbone configuration.

    python -m mfn_tf2.model --preset paper          # MobileFaceNet, 112 px: about 221 M MACs
    python -m mfn_tf2.model --preset mbf            # insightface's mbf
    python -m mfn_tf2.model --width 0.5 --image_size 64
"""
from __future__ import annotations

import argparse

from mfn_tf2.backbones import build_backbone, complexity
from mfn_tf2.cli import add_config_flags, build_configs, fail, named, pre_parse
from mfn_tf2.config import MODEL_PRESETS, ModelConfig


def main(argv=None) -> None:
    """``python -m mfn_tf2.model [--preset NAME] [model flags]``: prints the cost."""
    known = pre_parse(argv, preset=(MODEL_PRESETS, "keras_original"))
    parser = argparse.ArgumentParser(
        prog="python -m mfn_tf2.model",
        description="Prints the parameters and multiply-adds of a backbone configuration.")
    parser.add_argument("--preset", choices=sorted(MODEL_PRESETS), default="keras_original",
                        type=named(MODEL_PRESETS, "--preset"),
                        help="base configuration; explicit flags override it (default: keras_original)")
    add_config_flags(parser, ModelConfig, defaults=MODEL_PRESETS[known.preset])
    ns = parser.parse_args(argv)
    cfg = build_configs(parser, ns, {"model": ModelConfig})["model"]
    try:
        model = build_backbone(cfg)
    except ValueError as err:
        fail(str(err))
    cost = complexity(model)
    print(f"{cfg.arch}: image_size {cfg.image_size}, embedding_dim {cfg.embedding_dim}, "
          f"width {cfg.width}, expansion_ratio {cfg.expansion_ratio}")
    print(f"parameters: {cost['trainable']:,} ({cost['trainable'] / 1e6:.2f} M trainable; "
          f"{cost['params']:,} with BatchNorm statistics)")
    print(f"multiply-adds: {cost['macs']:,} ({cost['macs'] / 1e6:.1f} M per image)")


if __name__ == "__main__":
    main()
