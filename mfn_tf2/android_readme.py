"""The README of ``android_demo_assets/``: how an app feeds the models, aligns a face and tests its
integration, every number taken from the export's files.

``readme`` writes it from the shipped ``metadata.json`` (files renamed to the asset names, their
thresholds) and the export's ``report.json`` (each file's paired test against the float model);
``android.write_assets`` puts it beside the models. ``LANDMARK_ORDER`` is the order of the five
points, said here and in ``alignment.json``.

Example:
    >>> meta = json.loads((Path(__file__).parents[1] / "android_demo_assets" / "metadata.json").read_text())
    >>> text = readme(meta, {})
    >>> text.splitlines()[0], "## Feeding the model" in text, LANDMARK_ORDER in text
    ('# android_demo_assets', True, True)
"""
from __future__ import annotations

import json
from pathlib import Path

from mfn_tf2.calibration import METHODS, thresholds_markdown
from mfn_tf2.rules import EXPORT_FILES

LANDMARK_ORDER = ("as seen in the image: eye on the image's left, eye on the image's right, nose tip, "
                  "mouth corner on the image's left, mouth corner on the image's right")

# What each shippable export format is, in the README's words.
KIND_TEXT = {"int8": "post-training int8", "qat_int8": "QAT int8",
             "int8_islands": "int8 convs, PReLU and depthwise convs float between them, all on XNNPACK",
             "fp16": "float16 weights"}


def _format(file_name: str) -> str | None:
    """The export format of an export file name ("model_int8_islands.tflite" -> "int8_islands")."""
    return next((fmt for fmt, name in EXPORT_FILES.items() if name == file_name), None)


def readme(meta: dict, report: dict) -> str:
    """How to feed the models and where the thresholds come from, every number from the export's files.

    Args:
        meta: the shipped metadata (``android.shipped_metadata``: asset names, ``choice``, thresholds).
        report: the export's report.json; its ``models`` give each file's paired test ({} leaves them out).

    Returns:
        The README's Markdown text (no trailing newline).
    """
    pre, thr = meta["preprocessing"], meta["threshold"]
    # {export file: its paired test against the float model}
    paired = {report["files"].get(m["format"]): m["paired"] for m in report.get("models", []) if m.get("paired")}
    lines = ["# android_demo_assets", "",
             "Face embedding models exported by mfn_tf2 (MobileFaceNet + ArcFace), ready for "
             "`app/src/main/assets/`. Written whole from one export folder by `make demo` "
             "(`python -m mfn_tf2.demo --android_assets`) or `python -m mfn_tf2.export ... --android_assets`; "
             "do not edit by hand.", "", "## Which file, which threshold", "",
             *[f"- `{a}` is the export's `{f['source']}` ({KIND_TEXT.get(_format(f['source']), 'float')})"
               + (f": against the float model {paired[f['source']]['text']}." if f["source"] in paired else ".")
               for a, f in meta["files"].items()],
             "", "The export ships, as `model_int8.tflite`, the fastest of its int8 files (post-training int8, "
             "QAT int8, or int8 with float PReLU/depthwise islands) whose decisions on the verification pairs "
             "are not distinguishably worse than the float model's (exact McNemar test); every kind takes int8 "
             f"input and gives int8 output. Here: {meta['choice']}.", "",
             f"**Recommended operating point:** `{thr['file']}`, same person when cosine >= **{thr['cosine']:.4f}**: "
             f"the threshold at a false accept rate of {thr['far']:g}, measured on {thr['impostor_pairs']:,} impostor "
             f"and {thr['genuine_pairs']:,} genuine pairs of `{thr['measured_on']}`"
             f"{' (relative to this folder)' if thr['measured_on'].startswith('../') else ''}. "
             f"Measured FAR {100 * thr['far_measured']:.4f} % ({thr['false_accepts']:,} false accepts; "
             f"{100 * thr['far_ci95'][0]:.4f} to {100 * thr['far_ci95'][1]:.4f} %: {METHODS['far_interval']}), "
             f"TAR {100 * thr['tar']:.2f} % ({100 * thr['tar_ci95'][0]:.2f} to {100 * thr['tar_ci95'][1]:.2f} %: "
             f"{METHODS['tar_interval']}). `metadata.json` -> `threshold`. "
             "Every file has its own thresholds (`thresholds`, all below): a threshold belongs to the file it "
             "was measured with.", "", *thresholds_markdown(meta["thresholds"]), "",
             "## Feeding the model", "",
             f"1. Align the face (below) into a {pre['input_size'][1]}x{pre['input_size'][0]} bitmap (width x height).",
             "2. Lay the pixels out as NHWC, batch 1, channels in **RGB** order "
             "(Android `Bitmap.getPixels` gives ARGB ints: take R, G, B).",
             f"3. Normalise each channel value p (0..255): x = (p - {pre['mean']}) / {pre['std']}.", ""]
    for name, io_ in meta["files"].items():
        q_in, q_out = io_["input"]["quantization"], io_["output"]["quantization"]
        feed = (f"int8: q = clamp(Math.round(x / {q_in['scale']:.8g}) {_signed(q_in['zero_point'])}, -128, 127) "
                "(round half up)" if q_in else f"{io_['input']['dtype']}: x as is")
        read = (f"int8: e = (q {_signed(-q_out['zero_point'])}) * {q_out['scale']:.8g}" if q_out
                else f"{io_['output']['dtype']}: as is")
        lines += [f"### `{name}`", "", f"- input `{io_['input']['name']}` shape {io_['input']['shape']}, {feed}",
                  f"- output `{io_['output']['name']}` shape {io_['output']['shape']}, {read}", ""]
    lines += ["## Comparing faces", "",
              "L2-normalise each embedding e (e / |e|); the cosine similarity of two faces is the dot product "
              "of their normalised embeddings; same person when it reaches the file's threshold (above).", "",
              "## Testing your integration", "",
              "`samples/face_*.png` are model-sized RGB faces; `golden.json` holds the normalised embedding "
              "LiteRT computes for each with each model, and for a few same/different pairs their cosine and "
              "the decision at each file's threshold. Feed each PNG as above: your embedding should have cosine "
              ">= `tolerance.cosine_min` with the golden one (XNNPACK and GPU delegates round slightly "
              "differently), your pair cosines agree within `tolerance.pair_cosine_abs`.", "",
              *ALIGN_README]
    return "\n".join(lines)


def _signed(value: int) -> str:
    """A term of a formula.

    Args:
        value: an integer (a zero point).

    Returns:
        "+ 3" or "- 3".

    Example:
        >>> _signed(-3), _signed(0)
        ('- 3', '+ 0')
    """
    return f"{'+' if value >= 0 else '-'} {abs(value)}"


ALIGN_README = [
    "## Aligning a face (5 landmarks)", "",
    "The model expects faces warped onto the 5-point template its training faces were aligned to "
    "(`metadata.json` -> `preprocessing` -> `template` names it; `alignment.json` -> `points` are its points at the "
    "input size; warping onto another layout, e.g. ArcFace's for a model trained on LFW-a crops, costs accuracy), "
    f"in this order, {LANDMARK_ORDER}, (x, y) in pixels of the bitmap you warp. Check the order "
    "whatever the head's roll: with e1, e2 the eyes, c their midpoint and m the mouth corners' midpoint, "
    "(e2.x - e1.x) * (m.y - c.y) - (e2.y - e1.y) * (m.x - c.x) > 0 (y pointing down); if it is negative, swap the "
    "eyes and swap the mouth corners. A mirrored bitmap (a front-camera preview) swaps sides: take the points on "
    "the bitmap you warp.", "",
    "Where an app gets the five points on the device (an unmirrored image of a face looking at the camera):", "",
    "- **ML Kit face detection** (`setLandmarkMode(LANDMARK_MODE_ALL)`): its left and right are the subject's "
    "(`FaceLandmark.LEFT_EYE` is the subject's left eye, on the image's right). Template order: `RIGHT_EYE`, "
    "`LEFT_EYE`, `NOSE_BASE`, `MOUTH_RIGHT`, `MOUTH_LEFT` (`getPosition()`, pixels, (0, 0) top left). ML Kit "
    "has no nose tip: `NOSE_BASE` is the midpoint between the nostrils where the nose meets the face, below the "
    "template's nose tip; the least-squares fit spreads that offset over the five points.",
    "- **MediaPipe Face Detector** (BlazeFace): six keypoints, normalised to 0..1 (x times the width, y times the "
    "height): 0 and 1 the eye centres (named right and left eye), 2 the nose tip, 3 the mouth centre, 4 and 5 "
    "the ear tragions. No mouth corners: fit eyes, nose tip and mouth centre onto the template's eyes, nose and "
    "the midpoint of its mouth corners (a 4-point fit, not the 5-point one the goldens check); order the eyes "
    "with the check above.",
    "- **MediaPipe Face Landmarker** (478 points, normalised to 0..1): 468 (iris centre of the eye whose corners "
    "are 33 and 133: the image's left; MediaPipe's right eye), 473 (iris centre of the eye of 263 and 362: the "
    "image's right), 1 (nose tip), 61 (mouth corner on the image's left), 291 (on the image's right).", "",
    "Then compute the similarity M (rotation, uniform scale, translation) that maps the points onto `points` in "
    "least squares (Umeyama 1991: centre both point sets; SVD of their 2x2 covariance gives the rotation, the "
    "singular values over the landmarks' variance the scale; no reflection), and warp the photo with M into an "
    "input-sized bitmap, bilinear, black outside (Android: `Matrix.setValues` with M's six numbers + "
    "`Canvas.drawBitmap` with a filtering `Paint`).", "",
    "`alignment.json` -> `cases`: for each raw `samples/photo_*.png` (a face turned, scaled and shifted onto a "
    "larger canvas), the `landmarks` the kit's detector found (`detector`) and the true ones (`landmarks_true`), "
    "the `matrix` M from the detected ones (yours should agree within `tolerance.matrix_abs`), the `aligned` face "
    "(`samples/aligned_*.png`, within `tolerance.pixel_abs` levels) and its `embeddings` (cosine >= "
    "`tolerance.cosine_min`). `pairs`: a same-person and a different-person pair of these photos, their cosine "
    "per model (within `tolerance.pair_cosine_abs`) and the decision at each file's threshold (`threshold`). "
    "From Python: `FeatureExtractor(model).infer(photo, landmarks=landmarks)`.", ""]


__all__ = ["LANDMARK_ORDER", "ALIGN_README", "readme"]
