"""Align faces onto the ArcFace template from 5 landmarks (eyes, nose, mouth corners).

    # landmarks from any detector: CSV (path,x1,y1,...,x5,y5) or JSON ({path: [[x, y] x 5]})
    python -m mfn_tf2.align photos/ landmarks.csv aligned/
    python -m mfn_tf2.align photos/ landmarks.json aligned96/ --template 112x96

The library is ``mfn_tf2.alignment`` (``align_face``, ``warp_matrix``, ``read_landmarks``).
"""
from __future__ import annotations

import argparse

from mfn_tf2 import cli
from mfn_tf2.alignment import TEMPLATES, AlignError, align_folder


def main(argv=None) -> None:
    """``python -m mfn_tf2.align IMAGES LANDMARKS OUT [--template 112x112|112x96]``."""
    p = argparse.ArgumentParser(prog="python -m mfn_tf2.align", description=__doc__.split("\n")[0])
    p.add_argument("images_dir", help="folder the landmark file's paths are relative to")
    p.add_argument("landmarks", help="CSV (path,x1,y1,...,x5,y5) or JSON ({path: [[x, y] x 5]})")
    p.add_argument("out_dir", help="aligned faces go here, same relative paths, as PNG")
    p.add_argument("--template", choices=sorted(TEMPLATES), default="112x112",
                   help="ArcFace 112x112 (default) or the 112x96 variant")
    ns = p.parse_args(argv)
    try:
        result = align_folder(ns.images_dir, ns.landmarks, ns.out_dir, ns.template)
    except (AlignError, OSError) as err:
        cli.fail(str(err))
    for name, why in result["skipped"]:
        print(f"skipped {name}: {why}")
    print(f"aligned {result['written']} faces onto the {ns.template} template in {ns.out_dir} "
          f"({len(result['skipped'])} skipped)")


if __name__ == "__main__":
    main()
