"""PyTorch reference: training images/s of the paper MobileFaceNet with insightface's ArcFace loss.

The same network, data and step as ``python -m mfn_tf2.benchmark --train --preset paper``
(112 px, batch 64, 128-d embedding, 1000 synthetic classes, s = 64, m = 0.5, SGD with
momentum 0.9 and weight decay 5e-4), written the plain PyTorch way, so that the kit's
figure can be compared with it in the same run. Run it through ``torch_reference.sh``,
which keeps torch in its own venv (never a dependency of the kit):

    benchmarks/torch_reference.sh --steps 10 --warmup 3
"""
import argparse
import math
import os
import time

import torch
from torch import nn

# Paper Table 1 bottlenecks: (expansion t, output channels c, repeats n, first stride s),
# as in mfn_tf2.backbones.PAPER_BOTTLENECKS.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


def unit(cin, cout, kernel, stride=1, groups=1, act=True, padding=None):
    """Conv (no bias) + BatchNorm [+ PReLU, one slope per channel, 0.25 at start]."""
    padding = kernel // 2 if padding is None else padding
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.PReLU(cout)) if act else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 linear project."""

    def __init__(self, cin, expand, cout, stride):
        super().__init__()
        self.body = nn.Sequential(unit(cin, expand, 1), unit(expand, expand, 3, stride, groups=expand),
                                  unit(expand, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(nn.Module):
    """Chen et al. 2018 with the paper's per-stage expansion: 221 M multiply-adds at 112 px."""

    def __init__(self, embedding_dim=128, image_size=112):
        super().__init__()
        blocks, channels = [unit(3, 64, 3, 2), unit(64, 64, 3, groups=64)], 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                blocks.append(Bottleneck(channels, channels * t, c, s if i == 0 else 1))
                channels = c
        side = image_size // 16
        blocks += [unit(channels, 512, 1), unit(512, 512, side, groups=512, act=False, padding=0),
                   unit(512, embedding_dim, 1, act=False)]
        self.body = nn.Sequential(*blocks)

    def forward(self, x):
        return self.body(x).flatten(1)


class ArcFace(nn.Module):
    """insightface arcface_torch's ArcFace margin on normalised embeddings and class weights."""

    def __init__(self, embedding_dim, num_classes, s=64.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_dim)))
        self.s, self.m = s, m
        self.theta, self.sinmm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def forward(self, embeddings, labels):
        cos = nn.functional.linear(nn.functional.normalize(embeddings), nn.functional.normalize(self.weight))
        cos = cos.clamp(-1, 1)
        target = cos.gather(1, labels[:, None])
        sin = torch.sqrt(1.0 - target * target)
        margined = target * math.cos(self.m) - sin * math.sin(self.m)
        margined = torch.where(target > self.theta, margined, target - self.sinmm)
        logits = cos.scatter(1, labels[:, None], margined) * self.s
        return nn.functional.cross_entropy(logits, labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--image_size", type=int, default=112)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, head = MobileFaceNet(image_size=args.image_size), ArcFace(128, args.classes)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1
    labels = torch.randint(0, args.classes, (args.batch_size,))
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = head(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        step()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        loss = step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if not torch.isfinite(loss):
        raise SystemExit(f"error: training loss became {loss.item()}")
    images_done = args.steps * args.batch_size
    macs = sum(m.weight.numel() * math.prod(o) for m, o in _output_sizes(model, args.image_size))
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} cores: "
          f"{images_done / wall:.1f} images/s at batch {args.batch_size} ({macs / 1e6:.0f} M MACs/img, "
          f"{1e3 * wall / args.steps:.0f} ms/step, {images_done / cpu:.1f} images per CPU-second)")


def _output_sizes(model, image_size):
    """(conv, output spatial size) of every conv, from one forward pass of one image."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append((m, o.shape[2:])))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    model.train()
    for h in hooks:
        h.remove()
    return sizes


if __name__ == "__main__":
    main()
