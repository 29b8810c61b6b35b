"""The export form: a backbone rewritten into the graph that int8 TFLite runs fast.

The converter quantizes this graph, and quantization-aware training
(``quantize.qat_model``) fine-tunes this same graph, so the int8 file runs
exactly the ops QAT trained. Each BatchNorm is folded into its conv (float64
arithmetic) and each PReLU is written in a form LiteRT's XNNPACK delegate
runs in int8 (it takes PRELU and MAXIMUM in float only, so a plain int8 PReLU
model falls back to the slow reference kernel for every PReLU):

* one slope per layer (``ModelConfig.prelu == "shared"``): LEAKY_RELU(a);
* one slope per channel: with slopes ``a``

      u = sigma * z                    (sigma = -1 where a > 1, folded into the conv)
      y = u + relu((b - 1) * u)        (b = a, or 1/a where a > 1; one int8 MUL with
                                        fused RELU and one int8 ADD)
      prelu(z) = scale * y             (scale = 1, or -a where a > 1; folded into
                                        the next conv's input channels)

  which is exact for any slope: for b <= 1, u + relu((b-1)u) is u when u > 0
  and b*u otherwise; a slope above 1 is the mirrored slope 1/a of -z, scaled.

Why this form (measured on XNNPACK, paper model, 112x112): int8 MAXIMUM is
float-only in the delegate too, so max(z, a*z) falls back like PRELU; emitting
relu(z) and relu(-z) from the conv (weights [W; -W]) and letting the next conv
absorb [V; -aV] is exact with no elementwise op, but doubles the multiply-adds
of both convs and cannot pass a depthwise conv, and a depthwise conv with
depth_multiplier 2 is slow in XNNPACK: it ran 2-3x slower than this form.

The per-channel MUL is this form's main cost. One run on an AMD EPYC (AVX-512
VNNI, 2 cores, loaded; paper model, 1 thread, fastest of 400 invocations
each; fp32 4.7 ms): the int8 convs alone (ReLU fused, not MobileFaceNet's
function) 1.9 ms, LEAKY_RELU (one slope per layer) 2.1, this form 3.0, about
0.2 ms of its extra 1.1 the ADDs. XNNPACK runs int8 ops with a per-channel
constant (MUL, a 1x1 depthwise conv, a grouped 1x1 conv) at about a fifth of
the speed of LEAKY_RELU, ADD or a MUL by one scalar, and leaves int8 RELU,
ABS, MINIMUM, HARD_SWISH and PRELU to the reference kernels, so no exact int8
form tried was faster: a 1x1 depthwise conv for the MUL 3.1 ms, the MUL's
constant tiled to the full tensor 3.1, each depthwise conv run twice (linear,
and scaled with fused ReLU) instead of its MUL 3.4, every conv run twice 3.9.
Faster is leaving the PReLUs and the depthwise convs between two pointwise
convs in float while the int8 pointwise convs do the multiply-adds
(DEQUANTIZE, PRELU, DEPTHWISE_CONV_2D, PRELU, QUANTIZE, all on XNNPACK):
2.2 ms, exact as far as float goes (PRELU alone in float: 2.4). That graph
is ``export_form(model, float_prelu=True)``, converted with PRELU and
DEPTHWISE_CONV_2D left in float.

Example:
    >>> from mfn_tf2.config import ModelConfig
    >>> from mfn_tf2.backbones import build_backbone
    >>> backbone = build_backbone(ModelConfig(width=0.25, image_size=32))
    >>> fast = export_form(backbone)           # same embedding, int8-friendly graph
    >>> sorted({type(layer).__name__ for layer in fast.layers})
    ['Add', 'ChannelScale', 'Conv2D', 'DepthwiseConv2D', 'Flatten', 'InputLayer']
"""
from __future__ import annotations

import numpy as np

from mfn_tf2.backend import keras, tf

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class ChannelScale(keras.layers.Layer):
    """Multiplies the last axis by constant per-channel factors, then an optional ReLU.

    Converts to one int8 MUL (with a fused RELU when ``relu``).

    Example:
        >>> ChannelScale([2.0, -1.0], relu=True)(np.ones((1, 2), np.float32)).numpy()
        array([[2., 0.]], dtype=float32)
    """

    def __init__(self, factors, relu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.factors = np.asarray(factors, np.float32)
        self.relu = relu

    def call(self, x):
        y = x * tf.constant(self.factors)
        return tf.nn.relu(y) if self.relu else y

    def get_config(self):
        return {**super().get_config(), "factors": self.factors.tolist(), "relu": self.relu}


class _Conv:
    """A conv whose BatchNorm/PReLU are being folded: float64 kernel, bias, slopes."""

    def __init__(self, layer, weights, source):
        self.layer, self.source, self.alpha, self.prelu_name = layer, source, None, None
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
    negative_part = ChannelScale(slope - 1.0, relu=True, name=f"{conv.prelu_name}_mul")(u)
    y = keras.layers.Add(name=f"{conv.prelu_name}_add")([u, negative_part])
    return _Scaled(y, None if np.all(scale == 1.0) else scale)


def _plain(value: _Scaled):
    """The tensor of a value, with an explicit MUL if it still carries a scale."""
    return value.tensor if value.scale is None else ChannelScale(value.scale)(value.tensor)


def _weights(layer) -> dict:
    """{weight name: array} of a layer (``kernel``, ``moving_mean``, ``alpha``, ...)."""
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}


def _slopes(layer):
    """A PReLU's slopes as float64, and whether one slope serves the whole layer."""
    alpha = layer.get_weights()[0].astype(np.float64)
    return alpha.reshape(-1), alpha.size == 1


def has_channel_prelu(model: keras.Model) -> bool:
    """Whether any PReLU of ``model`` has more than one slope (per-channel slopes).

    Only such a model gains from ``float_prelu`` ("int8_islands"): one slope per
    layer is already a fast int8 LEAKY_RELU, and without PReLU only the
    depthwise convs would stay float, which is slower than int8.

    Example:
        >>> from mfn_tf2.config import ModelConfig
        >>> from mfn_tf2.backbones import build_backbone
        >>> [has_channel_prelu(build_backbone(ModelConfig(width=0.25, image_size=32, prelu=p)))
        ...  for p in ("channel", "shared")]
        [True, False]
    """
    return any(isinstance(layer, keras.layers.PReLU) and not _slopes(layer)[1] for layer in model.layers)


def export_form(model: keras.Model, float_prelu: bool = False) -> keras.Model:
    """Rewrites a float backbone into the graph exported to int8 (and trained by QAT).

    BatchNorms are folded into their convs and every PReLU becomes LEAKY_RELU
    (one slope per layer) or an int8 MUL (fused ReLU) + ADD pair with signs
    and scales moved into the neighbouring convs (see the module docstring),
    so that the converted int8 model has no op left to LiteRT's reference
    kernels.

    Args:
        model: a functional float model of Conv2D/DepthwiseConv2D,
            BatchNormalization, PReLU and other built-in layers
            (``backbones.build_backbone``).
        float_prelu: keep every per-channel PReLU a PReLU layer (BatchNorms
            are still folded), for a conversion that leaves PRELU and
            DEPTHWISE_CONV_2D in float between int8 pointwise convs (faster
            on XNNPACK, see the module docstring). One slope per layer still
            becomes LEAKY_RELU.

    Returns:
        A float functional model with the same input and output, computing
        the same function (to float rounding), made of Conv2D,
        DepthwiseConv2D (both with bias), ChannelScale, LeakyReLU, Add (or,
        with ``float_prelu``, PReLU in place of ChannelScale and its Add) and
        the model's other layers.

    Example:
        >>> from mfn_tf2.config import ModelConfig
        >>> from mfn_tf2.backbones import build_backbone
        >>> backbone = build_backbone(ModelConfig(width=0.25, image_size=32, prelu="shared"))
        >>> x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
        >>> fast = export_form(backbone)
        >>> bool(np.allclose(fast(x), backbone(x, training=False), atol=1e-4))
        True
        >>> "LeakyReLU" in {type(layer).__name__ for layer in fast.layers}
        True
        >>> islands = export_form(build_backbone(ModelConfig(width=0.25, image_size=32)), float_prelu=True)
        >>> sorted({type(layer).__name__ for layer in islands.layers})
        ['Add', 'Conv2D', 'DepthwiseConv2D', 'Flatten', 'InputLayer', 'PReLU']
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
        return isinstance(values[id(t)], _Conv) and consumers.get(id(t), 0) == 1 and values[id(t)].alpha is None

    for layer in model.layers[1:]:
        inputs, out = layer.input, id(layer.output)
        if isinstance(layer, _CONVS) and layer.activation is keras.activations.linear:
            values[out] = _Conv(layer, _weights(layer), value(inputs))
        elif isinstance(layer, keras.layers.BatchNormalization) and foldable(inputs):
            values[id(inputs)].fold_batchnorm(layer, _weights(layer))
            values[out] = values[id(inputs)]
        elif isinstance(layer, keras.layers.PReLU) and _slopes(layer)[1]:
            slope = float(_slopes(layer)[0][0])
            values[out] = _Scaled(keras.layers.LeakyReLU(alpha=slope, name=layer.name)(_plain(value(inputs))))
        elif isinstance(layer, keras.layers.PReLU) and foldable(inputs) and not float_prelu \
                and layer.get_config()["shared_axes"] == [1, 2]:
            values[id(inputs)].alpha, values[id(inputs)].prelu_name = _slopes(layer)[0], layer.name
            values[out] = values[id(inputs)]
        else:
            xs = [_plain(value(t)) for t in tf.nest.flatten(inputs)]
            clone = layer.__class__.from_config(layer.get_config())
            y = clone(xs if len(xs) > 1 else xs[0])
            clone.set_weights(layer.get_weights())
            values[out] = _Scaled(y)
    return keras.Model(image, _plain(value(model.output)), name=f"{model.name}_export")


__all__ = ["ChannelScale", "export_form", "has_channel_prelu"]
