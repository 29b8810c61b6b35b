"""Print the parameters and multiply-adds of a backbone configuration.

    python -m mfn_tf2.model --preset paper          # MobileFaceNet, 112 px: about 221 M MACs
    python -m mfn_tf2.model --preset mbf            # insightface's mbf
    python -m mfn_tf2.model --width 0.5 --image_size 64
"""
from __future__ import annotations

import argparse

from mfn_tf2 import cli
from mfn_tf2.backbones import build_backbone, complexity
from mfn_tf2.config import ModelConfig


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """Every flag of ``python -m mfn_tf2.model``; the model flags' defaults come from ``preset``."""
    parser = cli.shell_parser("model", __doc__)
    cli.add_preset_flag(parser)
    cli.add_config_flags(parser, ModelConfig, defaults=cli.preset_defaults(preset))
    return parser


def main(argv=None) -> None:
    """``python -m mfn_tf2.model [--preset NAME] [model flags]``: prints the cost."""
    parser = build_parser(cli.pre_parse(argv, preset=cli.PRESET).preset)
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"model": ModelConfig})["model"]
    try:
        model = build_backbone(cfg)
    except ValueError as err:
        cli.fail(str(err))
    cost = complexity(model)
    print(f"{cfg.arch}: image_size {cfg.image_size}, embedding_dim {cfg.embedding_dim}, "
          f"width {cfg.width}, expansion_ratio {cfg.expansion_ratio}")
    print(f"parameters: {cost['trainable']:,} ({cost['trainable'] / 1e6:.2f} M trainable; "
          f"{cost['params']:,} with BatchNorm statistics)")
    print(f"multiply-adds: {cost['macs']:,} ({cost['macs'] / 1e6:.1f} M per image)")


if __name__ == "__main__":
    main()
