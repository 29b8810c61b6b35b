"""The MobileFaceNet backbone as a functional Keras model, and its cost.

Two architectures share one skeleton (stem, inverted-residual stages, 1x1
conv to 512, global depthwise conv, linear embedding):

* ``"mobilefacenet"``: Chen et al. 2018 (arXiv 1804.07573), Table 1. Every
  bottleneck widens its input ``t`` times; ``expansion_ratio`` is one ``t``
  for all of them ("6") or the paper's per-stage table ("paper").
* ``"mbf"``: insightface arcface_torch ``get_mbf`` (blocks=(1, 4, 6, 2),
  scale=2): doubled widths, a grouped second stem conv (2 channels a group)
  and fixed expansion widths; ``expansion_ratio`` is ignored.

The model is functional and made of Keras layers: its PReLU and Conv2D are
``layers.py``'s subclasses, which train faster and save as the built-in ones,
so quantization aware training can wrap it and ``keras.Model.from_config``
rebuilds it with no custom objects. Its input "image" is normalised pixels
((x - 127.5) / 128) and its output the raw, not L2-normalised, embedding.

Example:
    >>> from mfn_tf2.config import MODEL_PRESETS
    >>> model = build_backbone(MODEL_PRESETS["paper"])
    >>> model.output_shape
    (None, 128)
    >>> complexity(model)["macs"] // 10**6
    220

Run ``python -m mfn_tf2.model --preset paper`` to print the cost of a
configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mfn_tf2 import layers
from mfn_tf2.backend import keras
from mfn_tf2.config import PRELU_SLOPES, ModelConfig

# Paper Table 1 bottlenecks: (expansion t, output channels c, repeats n, first stride s).
PAPER_BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

# insightface get_mbf stages: (expansion width, output channels, stride, repeats).
# Each stage is a stride-2 DepthWise block followed by a Residual of stride-1 blocks.
MBF_BLOCKS = (((128, 128, 2, 1), (128, 128, 1, 4)),
              ((256, 256, 2, 1), (256, 256, 1, 6)),
              ((512, 256, 2, 1), (256, 256, 1, 2)))

# Channels of the 1x1 conv before the global depthwise conv (both archs).
SEP_CHANNELS = 512


@dataclass(frozen=True)
class _Plan:
    """Channel layout of one configuration, widths already applied.

    Args:
        stem: channels of the two stem convs.
        stem_group: channels per group of the second stem conv (1: depthwise).
        stages: per stage, per block: (expansion width, output channels, stride).
        sep: channels of the 1x1 conv before the global depthwise conv.
    """
    stem: int
    stem_group: int
    stages: tuple
    sep: int


def _channels(count: int, width: float) -> int:
    """``count * width`` rounded to a multiple of 8, at least 8."""
    return max(8, int(count * width / 8 + 0.5) * 8)


def _ratios(expansion_ratio: str) -> tuple[int, ...]:
    """One expansion t per paper stage, from "paper" or an integer string."""
    if expansion_ratio == "paper":
        return tuple(t for t, _, _, _ in PAPER_BOTTLENECKS)
    return (int(expansion_ratio),) * len(PAPER_BOTTLENECKS)


def _mobilefacenet_plan(cfg: ModelConfig) -> _Plan:
    stem = _channels(64, cfg.width)
    stages, channels = [], stem
    for t, (_, c, n, s) in zip(_ratios(cfg.expansion_ratio), PAPER_BOTTLENECKS):
        out, blocks = _channels(c, cfg.width), []
        for i in range(n):
            blocks.append((channels * t, out, s if i == 0 else 1))
            channels = out
        stages.append(tuple(blocks))
    return _Plan(stem, 1, tuple(stages), _channels(SEP_CHANNELS, cfg.width))


def _mbf_plan(cfg: ModelConfig) -> _Plan:
    stem = _channels(128, cfg.width)
    stages = tuple(tuple((_channels(e, cfg.width), _channels(c, cfg.width), s)
                         for e, c, s, n in stage for _ in range(n))
                   for stage in MBF_BLOCKS)
    # insightface: Conv2d(128, 128, groups=64), i.e. 2 channels a group.
    return _Plan(stem, 2, stages, _channels(SEP_CHANNELS, cfg.width))


# Architecture name -> function laying out its channels.
ARCHS = {"mobilefacenet": _mobilefacenet_plan, "mbf": _mbf_plan}


def _unit(x, name, kernel, filters=None, *, strides=1, groups=1, padding="same", prelu="channel"):
    """Conv (no bias) + BatchNorm [+ PReLU], as layers ``{name}_conv/_bn/_prelu``.

    ``filters=None`` makes the conv depthwise (one filter per channel);
    ``prelu`` is a key of ``PRELU_SLOPES``, or None for no activation.
    """
    # Under mixed bfloat16, a unit whose conv runs as depthwise convs (grouped ones
    # train that way) computes in float32: TF's bfloat16 depthwise gradients are
    # 1.2-2x slower at stride 1 and 5-15x at stride 2 than float32's.
    bf16 = keras.mixed_precision.global_policy().compute_dtype == "bfloat16"
    dtype = "float32" if bf16 and (filters is None or groups > 1) else None
    conv = (keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding,
                                         use_bias=False, name=f"{name}_conv", dtype=dtype)
            if filters is None else
            layers.Conv2D(filters, kernel, strides=strides, padding=padding, groups=groups,
                          use_bias=False, name=f"{name}_conv", dtype=dtype))
    # PyTorch's BatchNorm defaults (insightface): moving statistics that settle
    # within ~50 steps (momentum 0.9, Keras' 0.99 needs ~500), epsilon 1e-5.
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn", dtype=dtype)(conv(x))
    if prelu:
        # Slopes 0.25 at start as torch.nn.PReLU; one per channel, or one per layer.
        x = layers.PReLU(keras.initializers.Constant(0.25), shared_axes=list(PRELU_SLOPES[prelu]),
                         name=f"{name}_prelu", dtype=dtype)(x)
    return x


def _bottleneck(x, expand, out, stride, name, prelu):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 linear project."""
    y = _unit(x, f"{name}_expand", 1, expand, prelu=prelu)
    y = _unit(y, f"{name}_dw", 3, strides=stride, prelu=prelu)
    y = _unit(y, f"{name}_project", 1, out, prelu=None)
    if stride == 1 and x.shape[-1] == out:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def build_backbone(cfg: ModelConfig) -> keras.Model:
    """Builds the embedding network of ``cfg`` (same cfg, same layers and names).

    Args:
        cfg: the model configuration (arch, image_size, expansion_ratio,
            embedding_dim, width, prelu; the loss fields belong to the head).

    Returns:
        A functional ``keras.Model`` named ``cfg.arch``: input "image"
        (batch, image_size, image_size, 3) float32 normalised pixels, output
        "embedding" (batch, embedding_dim) float32, not L2-normalised.

    Example:
        >>> m = build_backbone(ModelConfig(width=0.25, image_size=32))
        >>> m.get_layer("block3_2_expand_prelu").output_shape
        (None, 4, 4, 192)
    """
    plan = ARCHS[cfg.arch](cfg)

    image = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    act = cfg.prelu
    x = _unit(image, "stem", 3, plan.stem, strides=2, prelu=act)
    if plan.stem_group == 1:
        x = _unit(x, "stem_dw", 3, prelu=act)
    else:
        x = _unit(x, "stem_group", 3, plan.stem, groups=plan.stem // plan.stem_group, prelu=act)
    for s, stage in enumerate(plan.stages, start=1):
        for b, (expand, out, stride) in enumerate(stage, start=1):
            x = _bottleneck(x, expand, out, stride, f"block{s}_{b}", act)
    x = _unit(x, "sep", 1, plan.sep, prelu=act)
    # GDConv: a linear depthwise conv as large as the feature map (image_size / 16).
    x = _unit(x, "gdc", cfg.image_size // 16, padding="valid", prelu=None)
    # A 1x1 conv on the 1x1 map is insightface's Linear + BatchNorm1d, kept as a
    # conv so int8 converters fold its BatchNorm.
    x = _unit(x, "embedding", 1, cfg.embedding_dim, prelu=None)
    # float32 output also under a mixed-precision policy (the head and exporters expect it).
    embedding = keras.layers.Flatten(name="embedding", dtype="float32")(x)
    return keras.Model(image, embedding, name=cfg.arch)


# Layer type -> its weight matrix; multiply-adds = its size x output positions.
_KERNELS = {
    keras.layers.Conv2D: lambda layer: layer.kernel,
    layers.Conv2D: lambda layer: layer.kernel,
    keras.layers.DepthwiseConv2D: lambda layer: layer.depthwise_kernel,
    keras.layers.Dense: lambda layer: layer.kernel,
}


def complexity(model: keras.Model) -> dict:
    """Parameters and multiply-adds of one image.

    Conventions: ``params`` is Keras' count, trainable and non-trainable
    (so it includes the BatchNorm moving mean and variance). ``trainable``
    leaves those statistics out: it is what PyTorch's ``parameters()``
    counts (kernels, BatchNorm scale and shift, PReLU slopes). The paper's
    "0.99 M parameters" does not say which it counts; for its 128-d model
    this build has 1.003 M trainable (+1.3 %), 0.976 M in kernels alone
    (-1.4 %) and 1.023 M in Keras' count (+3.3 %): compare ``trainable``.
    ``macs`` counts one multiply-add per kernel weight per output position
    of Conv2D (grouped too), DepthwiseConv2D and Dense layers; BatchNorm,
    PReLU, Add and biases are left out, as in the paper's 221 M MAdds
    (this build: 221.0 M; insightface's mbf: 437.5 M).

    Args:
        model: a built Keras model (functional; nested models are not walked).

    Returns:
        dict(params=int, trainable=int, macs=int).

    Example:
        >>> m = build_backbone(ModelConfig(width=0.25, image_size=32))
        >>> sorted(complexity(m))
        ['macs', 'params', 'trainable']
    """
    macs = sum(int(_KERNELS[type(layer)](layer).shape.num_elements())
               * math.prod(layer.output_shape[1:-1])
               for layer in model.layers if type(layer) in _KERNELS)
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return dict(params=int(model.count_params()), trainable=trainable, macs=macs)
