"""PyTorch peer of the `alexnet` benchmark suite (bench/main.ts alexnet).

Times the whole training step of the paper's AlexNet (docs/alexnet.md: 96-256-384-384-256
channels, conv2, conv4 and conv5 in two groups, LRN n=5 alpha 1e-4 beta 0.75 k 2 inside each
tower's channels, dropout 0.5 in fc6 and fc7) with PyTorch: forward, softmax cross-entropy,
backward and SGD (lr 0.01, momentum 0.9, weight decay 5e-4), in images per second.

--towers 1: the single-device form on --devices' first entry (grouped convolutions).
--towers 2: the paper's two towers, one per device of --devices (e.g. cuda:0,cuda:1), meeting
at conv3, fc6, fc7 and fc8 (fc8 on the first device), as the library's two-tower model does.

Inputs are random normal images [batch, 3, 224, 224] and random labels (the timing does not
depend on the pixels). Each step ends with a synchronisation of every CUDA device used, so the
clock (time.perf_counter) stops when the work is done. Prints one JSON object and nothing else.

Usage: python3 bench/peers/torch_alexnet.py [--towers 1] [--devices cpu] [--batch 128]
       [--classes 1000] [--iters 10] [--warmup 2] [--threads 2] [--seed 1]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


class Tower(nn.Module):
    """One tower's half of conv1..conv5, fc6, fc7 (all of it with halves=1 and groups)."""

    def __init__(self, halves):
        super().__init__()
        h = halves  # 2: a tower of the two-tower net (half the filters); 1: the whole layer
        self.grouped = h == 1
        g = 2 if self.grouped else 1
        self.conv1 = nn.Conv2d(3, 96 // h, 11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(96 // h, 256 // h, 5, padding=2, groups=g)
        self.conv3 = nn.Conv2d(256, 384 // h, 3, padding=1)
        self.conv4 = nn.Conv2d(384 // h, 384 // h, 3, padding=1, groups=g)
        self.conv5 = nn.Conv2d(384 // h, 256 // h, 3, padding=1, groups=g)
        self.fc6 = nn.Linear(9216, 4096 // h)
        self.fc7 = nn.Linear(4096, 4096 // h)

    def lrn(self, x):
        if not self.grouped:
            return F.local_response_norm(x, **LRN)
        a, b = x.chunk(2, dim=1)
        return torch.cat([F.local_response_norm(a, **LRN), F.local_response_norm(b, **LRN)], 1)


def pool(x):
    return F.max_pool2d(x, 3, 2)


class OneTower(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.t = Tower(1)
        self.fc8 = nn.Linear(4096, classes)

    def forward(self, x):
        t = self.t
        x = pool(t.lrn(F.relu(t.conv1(x))))
        x = pool(t.lrn(F.relu(t.conv2(x))))
        x = F.relu(t.conv3(x))
        x = F.relu(t.conv4(x))
        x = pool(F.relu(t.conv5(x))).flatten(1)
        x = F.dropout(F.relu(t.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(t.fc7(x)), 0.5, self.training)
        return self.fc8(x)


class TwoTowers(nn.Module):
    def __init__(self, classes, devices):
        super().__init__()
        self.da, self.db = devices
        self.a = Tower(2).to(self.da)
        self.b = Tower(2).to(self.db)
        self.fc8 = nn.Linear(4096, classes).to(self.da)

    def meet(self, a, b):
        return torch.cat([a, b.to(self.da)], 1), torch.cat([a.to(self.db), b], 1)

    def forward(self, x):
        A, B = self.a, self.b
        a, b = x.to(self.da), x.to(self.db)
        a, b = pool(A.lrn(F.relu(A.conv1(a)))), pool(B.lrn(F.relu(B.conv1(b))))
        a, b = pool(A.lrn(F.relu(A.conv2(a)))), pool(B.lrn(F.relu(B.conv2(b))))
        a, b = self.meet(a, b)
        a, b = F.relu(A.conv3(a)), F.relu(B.conv3(b))
        a, b = F.relu(A.conv4(a)), F.relu(B.conv4(b))
        a, b = pool(F.relu(A.conv5(a))).flatten(1), pool(F.relu(B.conv5(b))).flatten(1)
        a, b = self.meet(a, b)
        a, b = F.relu(A.fc6(a)), F.relu(B.fc6(b))
        a, b = self.meet(a, b)
        a, b = F.dropout(a, 0.5, self.training), F.dropout(b, 0.5, self.training)
        a, b = F.relu(A.fc7(a)), F.relu(B.fc7(b))
        x = torch.cat([a, b.to(self.da)], 1)
        return self.fc8(F.dropout(x, 0.5, self.training))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--towers', type=int, default=1, choices=[1, 2])
    p.add_argument('--devices', default='cpu')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--classes', type=int, default=1000)
    p.add_argument('--iters', type=int, default=10)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    devices = [d.strip() for d in a.devices.split(',')]
    if a.towers == 2:
        if len(devices) < 2:
            raise SystemExit('--towers 2 needs two --devices')
        model = TwoTowers(a.classes, devices[:2])
    else:
        model = OneTower(a.classes).to(devices[0])
    model.train()
    used = sorted({d for d in devices[:a.towers] if d.startswith('cuda')})
    sync = lambda: [torch.cuda.synchronize(d) for d in used]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, 3, 224, 224, device=devices[0])
    y = torch.randint(0, a.classes, (a.batch,), device=devices[0])
    times, losses = [], []
    for i in range(a.warmup + a.iters):
        sync()
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t = (time.perf_counter() - t0) * 1000
        losses.append(loss.item())
        if i >= a.warmup:
            times.append(t)
    med = statistics.median(times)
    print(json.dumps({
        'torch': torch.__version__, 'threads': torch.get_num_threads(), 'towers': a.towers, 'devices': devices[:a.towers],
        'batch': a.batch, 'ms': {'median': med, 'mean': statistics.mean(times), 'min': min(times), 'max': max(times), 'n': len(times), 'samples': times},
        'imagesPerSec': a.batch / (med / 1000), 'lossFirst': losses[0], 'lossLast': losses[-1],
        'params': sum(q.numel() for q in model.parameters()),
    }))


if __name__ == '__main__':
    main()
