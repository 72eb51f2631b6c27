#!/usr/bin/env python3
"""PyTorch's training-step time for any body `host-train bench` takes (`resnet18`,
`resnet10-w0.5`, ...), with the anchor's heads, loss and optimiser
(../shared/anchors/pytorch_hydranet.py --bench, which has resnet18 only).

The body is torchvision's ResNet layout (BasicBlock, 7x7 stem, 3x3 max-pool) with every
stage's width scaled like host-train's (`round(c * w)`, at least 4), so resnet18 here is
torchvision's resnet18. Prints one JSON line, the anchor's fields plus `backbone`.

Usage: torch_peer.py --backbone resnet10-w0.5 --size 112 --batch 64 [--threads 2]
"""
import argparse, json, time
import torch, torch.nn as nn
from torchvision.models.resnet import BasicBlock

DEPTHS = {"resnet10": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def body(name):
    depth, _, w = name.partition("-w")
    width = float(w) if w else 1.0
    ch = [max(4, round(c * width)) for c in (64, 128, 256, 512)]
    layers, c_in = [], ch[0]
    for i, (c, n) in enumerate(zip(ch, DEPTHS[depth])):
        for b in range(n):
            stride = 2 if i > 0 and b == 0 else 1
            down = None
            if stride != 1 or c_in != c:
                down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))
            layers.append(BasicBlock(c_in, c, stride, down))
            c_in = c
    stem = [nn.Conv2d(3, ch[0], 7, 2, 3, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1)]
    return nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), c_in


class HydraNet(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.net, n = body(name)
        mk = lambda k: nn.Sequential(nn.Linear(n, n), nn.ReLU(), nn.Linear(n, k))
        self.age, self.gender, self.eth = mk(1), mk(1), mk(5)

    def forward(self, x):
        f = self.net(x)
        return self.age(f).squeeze(1), self.gender(f).squeeze(1), self.eth(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = HydraNet(a.backbone)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.randn(a.batch, 3, a.size, a.size)
    age = torch.rand(a.batch) * 80
    gender = torch.randint(0, 2, (a.batch,)).float()
    eth = torch.randint(0, 5, (a.batch,))

    def step():
        pa, pg, pe = model(x)
        loss = nn.functional.l1_loss(pa, age) + nn.functional.binary_cross_entropy_with_logits(pg, gender) \
            + nn.functional.cross_entropy(pe, eth)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    ts = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    med = sorted(ts)[len(ts) // 2]
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "backbone": a.backbone, "size": a.size,
                      "batch": a.batch, "threads": a.threads, "step_s_median": med, "img_per_s": a.batch / med}))


if __name__ == "__main__":
    main()
