"""One ``embed()`` for every kind of model: checkpoint, SavedModel, TFLite or in-memory Keras.

``FeatureExtractor`` reads what it needs from the model itself — input height,
width, dtype and quantization — and the pre-processing from the model's
``metadata.json`` (written by ``mfn_tf2.export``) or from explicit options,
so the evaluator, the training loop's periodic check and user code all embed
images the same way.

Example:
    >>> fe = FeatureExtractor("android_demo_assets/model_int8.tflite")
    >>> fe.infer(np.zeros((112, 112, 3), np.uint8)).shape
    (1, 128)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from mfn_tf2.alignment import TEMPLATES, align_faces, template_for
from mfn_tf2.config import PIXEL_MEAN, PIXEL_STD
from mfn_tf2.detection import largest_landmarks
from mfn_tf2.images import read_rgb
from mfn_tf2.models import RUNNABLE, ModelError, open_model
from mfn_tf2.preprocess import crop, model_input, resize


# Float pixels a resampler overshot by less than this still round into 0..255.
_ROUNDING = 0.5


class EmbedderError(ModelError):
    """A model that cannot be used as an embedder, or unusable input."""


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model input (template: the 5-point layout photos are aligned to, ``alignment.TEMPLATES``;
    None: ArcFace's for the input's aspect). Quantization comes from the model itself."""
    mean: float = PIXEL_MEAN
    std: float = PIXEL_STD
    bgr: bool = False
    crop: tuple[int, int, int, int] | None = None
    template: str | None = None


class _Keras:
    """An in-memory Keras model: normalised float images -> embeddings."""

    def __init__(self, model):
        self.model = model
        # A plain graph call, 2-3x faster than eager; not predict_on_batch (a collective under the training strategy).
        # Traced once for any batch size (the last batch is smaller; flip doubles it).
        from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of embedding with a .tflite file
        spec = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        _, self.height, self.width, _ = model.input_shape
        self.dtype, self.in_quant, self.kind = np.float32, None, "keras"

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._call(batch).numpy()


def _shape(shape) -> list:
    """A tensor shape as a list, unknown sizes as None."""
    return [None if d is None or d < 0 else int(d) for d in shape]


def _image_input(path: str, inputs: list[tuple[str, list]]) -> tuple[int, int]:
    """(height, width) of a model's one image input [(name, shape)]; else an EmbedderError."""
    if len(inputs) != 1:
        raise EmbedderError(f"{path}: the model takes {len(inputs)} inputs "
                            f"({', '.join(sorted(repr(n) for n, _ in inputs))}); expected one image (batch, H, W, 3)")
    name, shape = inputs[0]
    if len(shape) != 4 or shape[3] != 3:
        raise EmbedderError(f"{path}: input {name!r} has shape {shape}: expected an image (batch, H, W, 3)")
    if shape[1] is None or shape[2] is None:
        raise EmbedderError(f"{path}: input {name!r} has shape {shape}: the image size is not fixed; "
                            "export the model with a fixed height and width")
    return shape[1], shape[2]


def pick_output(path: str, outputs: list[tuple[str, list]], wanted: str | None = None) -> tuple[int, str]:
    """Which of a model's outputs [(name, shape)] is the embedding.

    Args:
        path: the model, named in messages.
        outputs: every output's name and shape, in the model's order.
        wanted: a name or an index chosen by the user (``--output``); None
            picks the rank-2 output (batch, D) with the largest D.

    Returns:
        (index, note): note is "" for a one-output model, else the line that
        says which output was taken and lists the others.

    Raises:
        EmbedderError: the chosen output does not exist or is not (batch, D).

    Example:
        >>> pick_output("m.tflite", [("logits", [1, 2]), ("emb", [1, 128])])[0]
        1
    """
    names = [name for name, _ in outputs]
    listing = ", ".join(f"{n!r} {s}" for n, s in outputs)
    if wanted is None:
        embeddings = [k for k, (_, shape) in enumerate(outputs) if len(shape) == 2]
        index = max(embeddings, key=lambda k: (outputs[k][1][1] or 0, -k)) if embeddings else 0
    elif wanted in names:
        index = names.index(wanted)
    elif wanted.isdigit() and int(wanted) < len(outputs):
        index = int(wanted)
    else:
        raise EmbedderError(f"{path}: --output {wanted}: no such output (outputs: {listing})")
    name, shape = outputs[index]
    if len(shape) != 2:
        raise EmbedderError(f"{path}: output {name!r} shape {shape} is not an embedding (batch, D)"
                            + (f" (outputs: {listing}; choose one with --output)" if len(outputs) > 1 else ""))
    if len(outputs) == 1:
        return index, ""
    others = ", ".join(f"{n!r} {s}" for k, (n, s) in enumerate(outputs) if k != index)
    how = "chosen with --output" if wanted is not None else "the largest (batch, D) output; --output chooses another"
    return index, f"{path}: {len(outputs)} outputs; the embedding is {name!r} {shape} ({how}); others: {others}"


class _SavedModel:
    """A SavedModel's ``serving_default`` signature (on TensorFlow's own thread pools)."""

    def __init__(self, path: str, fn, output: str | None):
        from mfn_tf2.backend import tf  # lazy: keeps TensorFlow out of embedding with a .tflite file
        self.fn = fn
        inputs = self.fn.structured_input_signature[1]
        self.height, self.width = _image_input(path, [(k, _shape(s.shape)) for k, s in inputs.items()])
        (self.arg, spec), = inputs.items()
        outputs = [(k, _shape(s.shape)) for k, s in self.fn.structured_outputs.items()]
        index, self.note = pick_output(path, outputs, output)
        self.output_name = outputs[index][0]
        self.dtype, self.in_quant, self.kind, self.tf = spec.dtype.as_numpy_dtype, None, "saved_model", tf

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.fn(**{self.arg: self.tf.constant(batch)})[self.output_name].numpy()


class _TFLite:
    """A .tflite file on the LiteRT interpreter (XNNPACK), batched where the model allows."""

    def __init__(self, path: str, interp, output: str | None):
        self.interp = interp
        inputs = self.interp.get_input_details()
        shapes = [(d["name"], _shape(d["shape_signature"] if len(d["shape_signature"]) else d["shape"])) for d in inputs]
        self.height, self.width = _image_input(path, shapes)
        self.input = inputs[0]
        outputs = self.interp.get_output_details()
        index, self.note = pick_output(path, [(d["name"], _shape(d["shape"])) for d in outputs], output)
        self.output, self.output_name = outputs[index], outputs[index]["name"]
        self.dtype, self.kind, self.batch = self.input["dtype"], "tflite", 1
        self.in_quant = self.input["quantization"] if self.input["quantization"][0] else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self.batch:
            self.interp.resize_tensor_input(self.input["index"], batch.shape)
            self.interp.allocate_tensors()
            self.batch = len(batch)
        self.interp.set_tensor(self.input["index"], batch)
        self.interp.invoke()
        out = self.interp.get_tensor(self.output["index"])
        # The chosen output's own (scale, zero point): uint8 and int8 outputs alike.
        scale, zero = self.output["quantization"]
        return (out.astype(np.float32) - zero) * scale if scale else out.astype(np.float32)


def _open_path(path: str, num_threads: int, output: str | None):
    """Opens a model file or folder (``models.open_model``) and embeds with what runs it:
    a LiteRT interpreter, a serving signature, or a Keras model (a training folder's or a Keras file's)."""
    kind, model = open_model(path, RUNNABLE, num_threads)
    if kind == "tflite":
        return _TFLite(path, model, output)
    return _SavedModel(path, model, output) if kind == "saved_model" else _Keras(model)


def model_metadata(path: str) -> dict:
    """Pre-processing found in the ``metadata.json`` of an exported model, else {}."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    for candidate in (os.path.join(folder, "metadata.json"),
                      os.path.join(os.path.dirname(os.path.abspath(folder)), "metadata.json")):
        if os.path.exists(candidate):
            with open(candidate) as f:
                return json.load(f).get("preprocessing", {})
    return {}


class FeatureExtractor:
    """Embeds RGB images with any model; outputs are L2-normalised.

    Args:
        model: path to a .tflite file, a SavedModel folder or a training
            directory, or an in-memory Keras model (normalised float input).
        mean, std, bgr, crop, template: pre-processing; None takes the model's metadata.json,
            else the kit's defaults (127.5, 128, RGB, no crop, ArcFace's template).
        flip: add the embedding of the mirrored image before normalising.
        batch_size: images per model call.
        num_threads: LiteRT threads for .tflite models.
        output: for a model with several outputs, the embedding's name or
            index; None takes the (batch, D) output with the largest D. Which
            one was taken is in ``note`` and ``describe()``.
        detect, min_score: raw photos: the largest face of each (``mfn_tf2.detection``, confidence >= min_score)
            is warped onto the template at the model's input size (no crop); no face: ``DetectionError``.

    Raises:
        ModelError: a path that is no model or cannot be opened (``mfn_tf2.models``);
            EmbedderError (a ModelError): a model that is no embedder.

    Example:
        >>> fe = FeatureExtractor("android_demo_assets/model_int8.tflite", detect=True)
        >>> fe.embed_paths(["data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg"]).shape
        (1, 128)
    """

    def __init__(self, model, *, mean=None, std=None, bgr=None, crop=None, template=None, flip=False,
                 batch_size: int = 64, num_threads: int = 2, output: str | None = None,
                 detect: bool = False, min_score: float = 0.9):
        is_path = isinstance(model, (str, os.PathLike))
        self.name = os.fspath(model) if is_path else getattr(model, "name", "keras")
        self.backend = _open_path(self.name, num_threads, output) if is_path else _Keras(model)
        self.note = getattr(self.backend, "note", "")
        meta = model_metadata(self.name) if is_path else {}
        given = {"mean": mean, "std": std, "bgr": bgr, "crop": crop, "template": template}
        self.pre = Preprocessing(**{k: v if v is not None else meta.get(k, getattr(Preprocessing, k))
                                    for k, v in given.items()})
        if self.pre.template not in (None, *TEMPLATES):
            raise EmbedderError(f"{self.name}: template {self.pre.template!r}: expected one of {sorted(TEMPLATES)}")
        self.flip, self.batch_size, self.detect, self.min_score = flip, batch_size, detect, min_score

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model takes."""
        return int(self.backend.height), int(self.backend.width)

    def describe(self) -> dict:
        """Model kind, input size, dtype and quantization, and pre-processing."""
        return {"model": self.name, "kind": self.backend.kind, "input_size": list(self.input_size),
                "input_dtype": np.dtype(self.backend.dtype).name,
                "input_quantization": list(self.backend.in_quant or ()),
                "output": getattr(self.backend, "output_name", None),
                "mean": self.pre.mean, "std": self.pre.std, "bgr": self.pre.bgr, "flip": self.flip,
                "detect": self.detect, "template": self.pre.template or template_for(self.input_size)}

    def _prepare(self, images: np.ndarray, box) -> np.ndarray:
        """uint8/float 0-255 RGB (N, H, W, 3) of any size -> the model's input tensor."""
        h, w = self.input_size
        resized = np.stack([resize(crop(im, box), h, w) for im in images])
        if self.pre.bgr:
            resized = resized[..., ::-1]
        return model_input(resized, self.backend.dtype, self.backend.in_quant, self.pre.mean, self.pre.std)

    def _embed(self, images: np.ndarray, aligned: bool = False) -> np.ndarray:
        """Embeddings of face crops, or of faces already ``aligned`` at the model's size (no crop box)."""
        out, box = [], None if aligned else self.pre.crop
        for start in range(0, len(images), self.batch_size):
            batch = self._prepare(images[start:start + self.batch_size], box)
            emb = self.backend.run(batch)
            if self.flip:
                emb = emb + self.backend.run(np.ascontiguousarray(batch[:, :, ::-1]))
            out.append(emb)
        emb = np.concatenate(out).astype(np.float64)  # float64: a badly trained model's huge outputs
        return (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def infer(self, images, landmarks=None) -> np.ndarray:
        """Embeds one RGB image (H, W, 3) or a batch (N, H, W, 3); uint8 or float 0-255.

        Args:
            images: already aligned face crops, or photos when ``landmarks`` is given or ``detect`` is set.
            landmarks: (5, 2) or (N, 5, 2) detector points (x, y) per image (eyes, nose, mouth corners):
                each image is first warped onto the template at the model's input size (``mfn_tf2.alignment``).
                With ``detect`` and no landmarks, the detector's are used.

        Returns:
            (N, D) float32 L2-normalised embeddings.

        Raises:
            EmbedderError: unusable pixels or landmarks; DetectionError: an image with no face ("image k").
        """
        images = check_images(images)
        if landmarks is None and self.detect:
            landmarks = largest_landmarks(list(images), self.min_score)
        if landmarks is None:
            return self._embed(images)
        points = np.asarray(landmarks, np.float64)
        if points.shape[-2:] != (5, 2) or points.reshape(-1, 5, 2).shape[0] != len(images):
            raise EmbedderError(f"landmarks have shape {points.shape}: expected (5, 2) points (x, y) "
                                f"per image, for {len(images)} image(s)")
        return self._embed(align_faces(images, self.input_size, points.reshape(-1, 5, 2), self.pre.template), True)

    def embed_paths(self, paths, progress: bool = False) -> np.ndarray:
        """Embeds image files (read as RGB; with ``detect``, their largest faces aligned), ``batch_size`` at a time.

        Returns:
            (len(paths), D) float32 L2-normalised embeddings.

        Raises:
            ImageError: an unreadable file; DetectionError: with ``detect``, a photo with no face.
        """
        out = []
        bar = tqdm(total=len(paths), desc=f"embedding ({os.path.basename(self.name)})",
                   unit="img", disable=not progress, leave=False)
        for start in range(0, len(paths), self.batch_size):
            chunk = paths[start:start + self.batch_size]
            images = [read_rgb(p) for p in chunk]
            if self.detect:  # faces warped at the model's size: no crop box
                images = align_faces(images, self.input_size, largest_landmarks(chunk, self.min_score), self.pre.template)
            out.append(self._embed(images, aligned=self.detect))
            bar.update(len(chunk))
        bar.close()
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def check_images(images) -> np.ndarray | list:
    """Validates user pixels: (H, W, 3) or (N, H, W, 3), uint8 or real 0-255, finite.

    Grayscale (H, W) / (..., H, W, 1) is replicated to RGB; anything else ambiguous
    is an ``EmbedderError`` naming the problem.
    """
    arr = np.asarray(images)
    if arr.dtype.kind not in "uif":
        raise EmbedderError(f"images have dtype {arr.dtype}: expected uint8 or float pixels 0-255")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise EmbedderError(f"images have shape {arr.shape}: expected (H, W, 3) or (N, H, W, 3) RGB")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise EmbedderError(f"images have shape {arr.shape}: the batch is empty")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise EmbedderError("images contain NaN or infinite pixels")
    low, high = float(arr.min()), float(arr.max())
    if low < -_ROUNDING or high > 255 + _ROUNDING:
        raise EmbedderError(f"images have pixels in range {low:g}..{high:g}: expected 0-255 "
                            "(scale 16-bit or -1..1 images to 8-bit RGB first)")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr.astype(np.float32) if arr.dtype != np.uint8 else arr
