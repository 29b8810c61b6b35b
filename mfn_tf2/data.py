"""``python -m mfn_tf2.data pack``: a face folder (or an insightface train.rec folder) packed
into TFRecord shards that read fast and split across training workers.

The shell parses the flags and calls ``shards.pack``; the training pipeline
itself is ``pipeline.open_training_data``, folder scanning ``folders``.

Example:
    python -m mfn_tf2.data pack faces/ packed/ --shards 64 --min_images 2
    python -m mfn_tf2.train packed/ ...      # trains on the shards
"""
from __future__ import annotations

import argparse
import dataclasses

from mfn_tf2 import cli
from mfn_tf2.config import DataConfig
from mfn_tf2.folders import DataError
from mfn_tf2.shards import pack


def main(argv=None) -> None:
    """``python -m mfn_tf2.data pack TRAIN_DIRECTORY OUT_DIR --shards N``."""
    parser = argparse.ArgumentParser(prog="python -m mfn_tf2.data",
                                     description="pack training faces into TFRecord shards")
    commands = parser.add_subparsers(dest="command", required=True)
    packer = commands.add_parser("pack", help="write a face folder (or an insightface train.rec "
                                 "folder) as TFRecord shards")
    cli.add_config_flags(packer, DataConfig, positional=("train_directory",), skip=tuple(
        f.name for f in dataclasses.fields(DataConfig)
        if f.name not in ("train_directory", "min_images", "max_identities", "seed")))
    packer.add_argument("out_dir", help="output folder of the shards")
    packer.add_argument("--shards", type=int, default=8, help="number of shard files (default: 8)")
    ns = parser.parse_args(argv)
    cfg = cli.build_configs(parser, ns, {"data": DataConfig})["data"]
    try:
        info = pack(cfg, ns.out_dir, ns.shards)
    except (DataError, OSError) as err:  # OSError: an unwritable OUT_DIR
        cli.fail(str(err))
    print(f"packed {info['total']} images of {info['num_classes']} identities into "
          f"{len(info['shards'])} shards in {ns.out_dir} ({len(info['rewritten'])} written now, "
          f"{len(info['skipped'])} files skipped)")


if __name__ == "__main__":
    main()
