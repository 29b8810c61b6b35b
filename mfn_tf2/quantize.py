"""Quantization-aware training of the graph that ships, and the ranges it learns.

``qat_model`` takes a float backbone, rewrites it into its export form (the
graph the int8 TFLite file runs: batch norm folded into the convs, PReLU as
LEAKY_RELU or MUL + ADD, see ``export_form.py``) and fake-quantizes that graph
with the scheme the TFLite converter uses:

* weights of Conv2D / DepthwiseConv2D: 8-bit symmetric, one scale per output
  channel (``per_tensor=True``: one scale per layer, for accelerators and
  NNAPI/DSP drivers that take nothing else);
* activations (every layer output, and the input): 8-bit asymmetric, one
  range per tensor, learned as a moving average of the batches' min/max.

Its activation ranges start where their moving averages settle on real
faces (``calibration``), then move with the weights while fine-tuning
(``exporting.finetune``, ``export --qat_epochs``) adapts them to int8 rounding;
``tflite.convert(qat, "qat_int8")`` then writes the ranges QAT learned into the
int8 file, with no second calibration.
``activation_ranges`` reads those learned ranges back (tests compare them with
the scales of the ``.tflite``).

Example:
    >>> from mfn_tf2.config import ModelConfig
    >>> from mfn_tf2.backbones import build_backbone
    >>> backbone = build_backbone(ModelConfig(width=0.25, image_size=32))
    >>> qat = qat_model(backbone)              # fake-quantized export form, trainable
    >>> qat.output_shape
    (None, 256)
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.backend import keras
from mfn_tf2.export_form import ChannelScale, export_form

# After backend: tfmot must see TF_USE_LEGACY_KERAS=1 when it imports TensorFlow.
import tensorflow_model_optimization as tfmot  # noqa: E402

_Q = tfmot.quantization.keras


class OutputQuantizeConfig(_Q.QuantizeConfig):
    """Fake-quantizes only a layer's output: 8 bits, per tensor, asymmetric (``ChannelScale``).

    The layer's constant factors are not fake-quantized: ``qat_model`` snaps
    them to the int8 grid the converter stores them on, so they are the same
    numbers in training and in the file.

    Example:
        >>> layer = ChannelScale([0.5, -0.25])
        >>> annotated = _Q.quantize_annotate_layer(layer, OutputQuantizeConfig())
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_Q.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# Custom objects a saved QAT model needs to load.
CUSTOM_OBJECTS = {"OutputQuantizeConfig": OutputQuantizeConfig, "ChannelScale": ChannelScale}


def quantize_scope():
    """Context in which saved QAT models (and their custom layers) load.

    Example (a QAT model saved to .h5 and loaded back with its quantizers):
        >>> import os, shutil, tempfile
        >>> x, folder = keras.Input((8, 8, 3)), tempfile.mkdtemp()
        >>> qat_model(keras.Model(x, keras.layers.Conv2D(4, 3, name="conv")(x))).save(os.path.join(folder, "qat.h5"))
        >>> with quantize_scope():
        ...     loaded = keras.models.load_model(os.path.join(folder, "qat.h5"))
        >>> activation_ranges(loaded)["quant_conv"]
        (-6.0, 6.0)
        >>> shutil.rmtree(folder)
    """
    return _Q.quantize_scope(CUSTOM_OBJECTS)


def int8_grid(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to the symmetric per-tensor int8 grid the converter stores constants on.

    Example:
        >>> (int8_grid(np.array([1.0, -0.3333])) * 127).round(4).tolist()   # steps of 1/127
        [127.0, -42.0]
    """
    values = np.asarray(values, np.float32)
    scale = float(np.abs(values).max()) / 127 or 1.0
    return (np.round(values / scale) * scale).astype(np.float32)


def _annotate(layer):
    """Clones ``layer`` marked for quantization (ChannelScale with its own config and snapped factors)."""
    config = layer.get_config()
    if isinstance(layer, ChannelScale):
        config["factors"] = int8_grid(layer.factors).tolist()
        return _Q.quantize_annotate_layer(ChannelScale.from_config(config), OutputQuantizeConfig())
    return _Q.quantize_annotate_layer(layer.__class__.from_config(config))


def _range_variables(qat: keras.Model) -> list[tuple]:
    """[(layer, (min variable, max variable))] of every output quantizer of a QAT model, in order.

    "output_*" (our configs, Add, ...), "post_activation_*" (convs), "<name>_*"
    (the input quantizer).
    """
    ranges = []
    for layer in qat.layers:
        found = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights if w.shape.rank == 0}
        kind = next((k for k in ("output", "post_activation", layer.name) if f"{k}_min" in found), None)
        if kind:
            ranges.append((layer, (found[f"{kind}_min"], found[f"{kind}_max"])))
    return ranges


def _start_ranges(qat: keras.Model, fast: keras.Model, images: np.ndarray, batch: int = 16) -> None:
    """Sets every activation range to where its moving average settles on ``images``.

    tfmot starts every range at [-6, 6] and moves it by 0.1 % a step, so a
    fine-tune of a few hundred steps would ship ranges that are mostly that
    guess (clipping large activations, wasting levels on small ones). The
    moving average of per-batch min/max settles at their mean: start there.
    """
    quantized = _range_variables(qat)
    # A wrapper's float twin in the export form has the wrapped layer's name; the input quantizer's is the input.
    probe = keras.Model(fast.input, [fast.get_layer(layer.layer.name).output if hasattr(layer, "layer")
                                     else fast.input for layer, _ in quantized])
    lows, highs = [], []
    for start in range(0, len(images), batch):
        outs = probe(images[start:start + batch], training=False)
        lows.append([min(float(np.min(o)), 0.0) for o in outs])   # zero stays in range (TFLite)
        highs.append([max(float(np.max(o)), 0.0) for o in outs])
    for (_, (low_var, high_var)), low, high in zip(quantized, np.mean(lows, axis=0), np.mean(highs, axis=0)):
        low_var.assign(low)
        high_var.assign(high)


def qat_model(backbone: keras.Model, per_tensor: bool = False, calibration=None) -> keras.Model:
    """The backbone's export form, fake-quantized for quantization-aware training.

    Args:
        backbone: a functional float backbone (``backbones.build_backbone``).
        per_tensor: one weight scale per conv instead of one per output channel.
        calibration: float32 (N, S, S, 3) normalised real faces; when given,
            every activation range starts where its moving average settles on
            them (else at tfmot's [-6, 6], which a short fine-tune barely moves).

    Returns:
        A trainable functional model with the backbone's input and output
        (names and shapes) whose float weights start from the backbone's
        folded ones; convert it with ``tflite.convert(qat, "qat_int8")``.

    Example (a conv, its batch norm and a PReLU: folded, PReLU as MUL + ADD, fake-quantized):
        >>> x = keras.Input((8, 8, 3), name="image")
        >>> y = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(x))
        >>> small = keras.Model(x, keras.layers.PReLU(shared_axes=[1, 2], name="prelu")(y))
        >>> qat = qat_model(small, per_tensor=True)
        >>> qat.input_names, qat.output_shape, [layer.name for layer in qat.layers[2:]]
        (['image'], (None, 6, 6, 4), ['quant_conv', 'quant_prelu_mul', 'quant_prelu_add'])
    """
    fast = export_form(backbone)
    with quantize_scope():
        annotated = keras.models.clone_model(fast, clone_function=_annotate)
        annotated.set_weights(fast.get_weights())
        scheme = _Q.default_8bit.Default8BitQuantizeScheme(disable_per_axis=per_tensor)
        qat = _Q.quantize_apply(annotated, scheme)
    if calibration is not None:
        _start_ranges(qat, fast, np.asarray(calibration, np.float32))
    return qat


def activation_ranges(qat: keras.Model) -> dict[str, tuple[float, float]]:
    """The (min, max) every output quantizer of a QAT model has learned, by layer name.

    The input's range is under the name of the input quantizer (the
    ``QuantizeLayer``, first after the input). These are the ranges the int8
    file is written with.

    Example (without calibration faces every range starts at tfmot's [-6, 6]):
        >>> x = keras.Input((8, 8, 3))
        >>> qat = qat_model(keras.Model(x, keras.layers.Conv2D(4, 3, name="conv")(x)))
        >>> activation_ranges(qat)["quant_conv"]
        (-6.0, 6.0)
    """
    return {layer.name: (float(low.numpy()), float(high.numpy())) for layer, (low, high) in _range_variables(qat)}


__all__ = ["OutputQuantizeConfig", "CUSTOM_OBJECTS", "quantize_scope", "int8_grid", "qat_model",
           "activation_ranges"]
