"""Quantization: QAT annotation of the PReLU backbone, and the int8-fast export form.

Two things live here:

* ``qat_model``: tensorflow-model-optimization's quantization-aware training
  for the whole backbone. tfmot has no config for PReLU, so
  ``PReLUQuantizeConfig`` fake-quantizes its slopes and its output.
* ``export_form``: the same function as a (float or QAT) backbone, rewritten so
  that the TFLite converter quantizes all of it and LiteRT's XNNPACK delegate
  runs all of it in int8. XNNPACK runs PRELU in float only (its delegate checks
  for float32 input and slope), so a plain int8 PReLU model falls back to the
  slow reference kernel for every PReLU. The export form folds each
  BatchNorm into its conv and writes every PReLU with slopes ``a`` as

      u = sigma * z                    (sigma = -1 where a > 1, folded into the conv)
      y = u + relu((b - 1) * u)        (b = a, or 1/a where a > 1; one int8 MUL with
                                        fused RELU and one int8 ADD)
      prelu(z) = scale * y             (scale = 1, or -a where a > 1; folded into
                                        the next conv's input channels)

  which is exact for any slope: for b <= 1, u + relu((b-1)u) is u when u > 0
  and b*u otherwise; a slope above 1 is the mirrored slope 1/a of -z, scaled.

  Why this form (measured on XNNPACK, paper model, 112x112): int8 MAXIMUM
  is float-only in the delegate too, so max(z, a*z) falls back like PRELU;
  emitting relu(z) and relu(-z) from the conv (weights [W; -W]) and letting
  the next conv absorb [V; -aV] is exact with no elementwise op, but doubles
  the multiply-adds of both convs and cannot pass a depthwise conv, and a
  depthwise conv with depth_multiplier 2 is slow in XNNPACK: it ran 2-3x
  slower than this form. The per-channel MUL is this form's main cost.

Example:
    >>> from mfn_tf2.config import ModelConfig
    >>> from mfn_tf2.model import build_backbone
    >>> backbone = build_backbone(ModelConfig(width=0.25, image_size=32))
    >>> fast = export_form(backbone)           # same embedding, int8-friendly graph
    >>> qat = qat_model(backbone)              # fake-quantized, trainable
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.backend import tf, keras

# After backend: tfmot must see TF_USE_LEGACY_KERAS=1 when it imports TensorFlow.
import tensorflow_model_optimization as tfmot  # noqa: E402

_Q = tfmot.quantization.keras
_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class PReLUQuantizeConfig(_Q.QuantizeConfig):
    """Fake-quantizes a PReLU's slopes (8-bit, per tensor) and its output.

    Example:
        >>> layer = keras.layers.PReLU(shared_axes=[1, 2])
        >>> annotated = _Q.quantize_annotate_layer(layer, PReLUQuantizeConfig())
    """

    def get_weights_and_quantizers(self, layer):
        return [(layer.alpha, _Q.quantizers.LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=True, narrow_range=False))]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        layer.alpha = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_Q.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


# Custom objects a saved QAT model needs to load.
CUSTOM_OBJECTS = {"PReLUQuantizeConfig": PReLUQuantizeConfig}


def quantize_scope():
    """Context in which saved QAT models (and their PReLU configs) load.

    Example:
        >>> with quantize_scope():                         # doctest: +SKIP
        ...     qat = keras.models.load_model("qat_backbone.h5")
    """
    return _Q.quantize_scope(CUSTOM_OBJECTS)


def _annotate(layer):
    """Clones ``layer`` marked for quantization (PReLU with its own config)."""
    clone = layer.__class__.from_config(layer.get_config())
    config = PReLUQuantizeConfig() if isinstance(layer, keras.layers.PReLU) else None
    return _Q.quantize_annotate_layer(clone, quantize_config=config)


def qat_model(backbone: keras.Model) -> keras.Model:
    """The backbone with every layer fake-quantized for quantization-aware training.

    Args:
        backbone: a functional float backbone (``model.build_backbone``).

    Returns:
        A trainable functional model with the backbone's input and output
        (names and shapes), starting from the backbone's weights.

    Example:
        >>> qat = qat_model(backbone)                       # doctest: +SKIP
        >>> qat.output_shape == backbone.output_shape       # doctest: +SKIP
        True
    """
    annotated = keras.models.clone_model(backbone, clone_function=_annotate)
    annotated.set_weights(backbone.get_weights())
    with quantize_scope():
        return _Q.quantize_apply(annotated)


class ChannelScale(keras.layers.Layer):
    """Multiplies the last axis by constant per-channel factors (an int8 MUL)."""

    def __init__(self, factors, **kwargs):
        super().__init__(**kwargs)
        self.factors = np.asarray(factors, np.float32)

    def call(self, x):
        return x * tf.constant(self.factors)

    def get_config(self):
        return {**super().get_config(), "factors": self.factors.tolist()}


class _Conv:
    """A conv whose BatchNorm/PReLU are being folded: float64 kernel, bias, slopes."""

    def __init__(self, layer, weights, source):
        self.layer, self.source, self.alpha = layer, source, None
        self.depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        self.kernel = weights["depthwise_kernel" if self.depthwise else "kernel"].astype(np.float64)
        outputs = int(np.prod(self.kernel.shape[2:])) if self.depthwise else self.kernel.shape[3]
        self.bias = weights.get("bias", np.zeros(outputs)).astype(np.float64)

    def scale_outputs(self, factors):
        """Multiplies output channels (kernel and bias) by ``factors`` (C_out,)."""
        shape = (1, 1, *self.kernel.shape[2:]) if self.depthwise else (1, 1, 1, -1)
        self.kernel = self.kernel * factors.reshape(shape)
        self.bias = self.bias * factors

    def fold_batchnorm(self, bn, weights):
        """Folds an inference-mode BatchNorm (``weights`` by name) into kernel and bias."""
        gain = weights.get("gamma", 1.0) / np.sqrt(weights["moving_variance"] + bn.epsilon)
        shift = weights.get("beta", 0.0) - weights["moving_mean"] * gain
        self.scale_outputs(np.broadcast_to(gain, self.bias.shape).astype(np.float64))
        self.bias = self.bias + shift

    def kernel_for(self, input_scale):
        """The kernel that absorbs a per-channel ``input_scale`` of its input."""
        if input_scale is None:
            return self.kernel
        if self.depthwise:
            return self.kernel * input_scale.reshape(1, 1, -1, 1)
        groups = self.layer.groups
        per_group = self.kernel.shape[2]
        # Input channel of (kernel row j, output o): group(o) * per_group + j.
        group = np.arange(self.kernel.shape[3]) // (self.kernel.shape[3] // groups)
        index = group[None, :] * per_group + np.arange(per_group)[:, None]
        return self.kernel * input_scale[index][None, None]

    def emit(self, x, kernel, bias):
        """Applies a bias-carrying copy of the conv with ``kernel``/``bias``."""
        config = {**self.layer.get_config(), "use_bias": True, "activation": None}
        config.pop("name")
        layer = self.layer.__class__.from_config(config)
        y = layer(x)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        return y


class _Scaled:
    """A tensor ``t`` whose true value is ``t * scale`` (per channel; None = 1)."""

    def __init__(self, tensor, scale=None):
        self.tensor, self.scale = tensor, scale


def _prelu_parts(alpha):
    """(sigma, b, scale) with prelu_a(z) = scale * prelu_b(sigma * z) and b <= 1."""
    mirrored = alpha > 1
    safe = np.where(mirrored, alpha, 1.0)
    return np.where(mirrored, -1.0, 1.0), np.where(mirrored, 1.0 / safe, alpha), np.where(mirrored, -alpha, 1.0)


def _emit(conv: _Conv) -> _Scaled:
    """Writes a folded conv (and its PReLU, in the int8-fast form) into the graph."""
    source = conv.source
    kernel = conv.kernel_for(source.scale)
    if conv.alpha is None:
        return _Scaled(conv.emit(source.tensor, kernel, conv.bias))
    sigma, slope, scale = _prelu_parts(conv.alpha)
    signs = sigma.reshape((1, 1, *kernel.shape[2:]) if conv.depthwise else (1, 1, 1, -1))
    u = conv.emit(source.tensor, kernel * signs, conv.bias * sigma)
    negative_part = keras.layers.ReLU()(ChannelScale(slope - 1.0)(u))
    y = keras.layers.Add()([u, negative_part])
    return _Scaled(y, None if np.all(scale == 1.0) else scale)


def _plain(value: _Scaled):
    """The tensor of a value, with an explicit MUL if it still carries a scale."""
    return value.tensor if value.scale is None else ChannelScale(value.scale)(value.tensor)


def _is_linear(layer) -> bool:
    """True if a conv has no activation (QAT wraps it in a QuantizeAwareActivation).

    tfmot's NoOpActivation marks a conv whose output is quantized after its
    BatchNorm: linear too.
    """
    activation = getattr(layer.activation, "activation", layer.activation)
    return activation is keras.activations.linear or type(activation).__name__ == "NoOpActivation"


def _unwrap(wrapper):
    """(float layer, {weight name: array}) of a layer or of a tfmot wrapper.

    A QAT wrapper holds the float variables of its layer (``stem_conv/kernel``)
    next to its own quantizer state (``quant_stem_conv/kernel_min``).
    """
    layer = getattr(wrapper, "layer", wrapper)
    mine = [w for w in wrapper.weights if w.name.startswith(layer.name + "/")]
    return layer, {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in mine}


def export_form(model: keras.Model) -> keras.Model:
    """Rewrites a backbone (float or QAT) into the graph exported to int8.

    BatchNorms are folded into their convs (float64 arithmetic) and every
    PReLU becomes an int8 MUL (fused ReLU) + ADD pair with signs and scales
    moved into the neighbouring convs (see the module docstring), so that the
    converted int8 model has no op left to LiteRT's reference kernels. QAT
    models contribute their trained float weights (fake-quant ranges are not
    kept: the int8 conversion calibrates again).

    Args:
        model: a functional model of Conv2D/DepthwiseConv2D, BatchNormalization,
            PReLU and other built-in layers (``model.build_backbone``), or the
            result of ``qat_model``.

    Returns:
        A float functional model with the same input and output, computing
        the same function (to float rounding).

    Example:
        >>> fast = export_form(backbone)                    # doctest: +SKIP
        >>> np.allclose(fast(x), backbone(x), atol=1e-4)    # doctest: +SKIP
        True
    """
    consumers = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in tf.nest.flatten(node.input_tensors):
                consumers[id(t)] = consumers.get(id(t), 0) + 1
    image = keras.Input(model.input.shape[1:], name=model.input.name.split(":")[0])
    values = {id(model.input): _Scaled(image)}

    def value(t) -> _Scaled:
        v = values[id(t)]
        if isinstance(v, _Conv):
            v = values[id(t)] = _emit(v)
        return v

    def foldable(t):
        return isinstance(values[id(t)], _Conv) and consumers.get(id(t), 0) == 1

    for wrapper in model.layers[1:]:
        (layer, weights), inputs = _unwrap(wrapper), wrapper.input
        if type(layer).__name__ == "QuantizeLayer":
            values[id(wrapper.output)] = value(inputs)
        elif isinstance(layer, _CONVS) and _is_linear(layer):
            values[id(wrapper.output)] = _Conv(layer, weights, value(inputs))
        elif isinstance(layer, keras.layers.BatchNormalization) and foldable(inputs) \
                and values[id(inputs)].alpha is None:
            values[id(inputs)].fold_batchnorm(layer, weights)
            values[id(wrapper.output)] = values[id(inputs)]
        elif isinstance(layer, keras.layers.PReLU) and foldable(inputs) \
                and values[id(inputs)].alpha is None and layer.get_config()["shared_axes"] == [1, 2]:
            values[id(inputs)].alpha = weights["alpha"].reshape(-1).astype(np.float64)
            values[id(wrapper.output)] = values[id(inputs)]
        else:
            xs = [_plain(value(t)) for t in tf.nest.flatten(inputs)]
            clone = layer.__class__.from_config(layer.get_config())
            out = clone(xs if len(xs) > 1 else xs[0])
            clone.set_weights(list(weights.values()))
            values[id(wrapper.output)] = _Scaled(out)
    return keras.Model(image, _plain(value(model.output)), name=f"{model.name}_export")


__all__ = ["PReLUQuantizeConfig", "CUSTOM_OBJECTS", "quantize_scope", "qat_model",
           "export_form", "ChannelScale"]
