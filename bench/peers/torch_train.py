"""PyTorch peer of `convnet train`: AlexNet-mini on Fashion-MNIST with the same recipe.

The network of docs/alexnet.md, AlexNet-mini (groups 2 in conv2, conv4, conv5; LRN
n=5, alpha 1e-4, beta 0.75, k 2; dropout 0.5 in fc6 and fc7), He-normal weights and zero
biases, SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, random horizontal flips,
normalised by the training set's mean and std, lr / 10 after epoch --drop. Reads the gzip IDX
files directly. Prints one JSON object per epoch: test top-1 and top-5, wall time, training
images per second.

Usage: /usr/bin/python3 bench/peers/torch_train.py [--width 0.5] [--epochs 10] [--drop 7]
       [--threads 2] [--data-dir /usr/share/datasets/fashion-mnist] [--seed 1]
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], 'big')
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(magic & 0xff)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


class AlexNetMini(nn.Module):
    def __init__(self, width, classes=10):
        super().__init__()
        c = lambda n: max(2, int(math.floor(n * width + 0.5)))
        self.conv1 = nn.Conv2d(1, c(64), 5, padding=2)
        self.conv2 = nn.Conv2d(c(64), c(128), 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(c(128), c(192), 3, padding=1)
        self.conv4 = nn.Conv2d(c(192), c(192), 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(c(192), c(128), 3, padding=1, groups=2)
        self.fc6 = nn.Linear(c(128) * 4, c(1024))
        self.fc7 = nn.Linear(c(1024), c(1024))
        self.fc8 = nn.Linear(c(1024), classes)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.max_pool2d(self.lrn(F.relu(self.conv1(x))), 3, 2)
        x = F.max_pool2d(self.lrn(F.relu(self.conv2(x))), 3, 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return self.fc8(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--width', type=float, default=0.5)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--drop', type=int, default=7)
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--data-dir', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    d = a.data_dir
    xtr = read_idx(f'{d}/train-images-idx3-ubyte.gz').astype(np.float32) / 255
    ytr = read_idx(f'{d}/train-labels-idx1-ubyte.gz').astype(np.int64)
    xte = read_idx(f'{d}/t10k-images-idx3-ubyte.gz').astype(np.float32) / 255
    yte = read_idx(f'{d}/t10k-labels-idx1-ubyte.gz').astype(np.int64)
    mean, std = xtr.mean(), xtr.std()
    xtr = torch.from_numpy((xtr - mean) / std).unsqueeze(1)
    xte = torch.from_numpy((xte - mean) / std).unsqueeze(1)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    model = AlexNetMini(a.width)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=a.drop, gamma=0.1)
    start = time.perf_counter()
    batch = 128
    for epoch in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.from_numpy(rng.permutation(len(ytr)))
        seen = 0
        for k in range(len(ytr) // batch):
            idx = perm[k * batch:(k + 1) * batch]
            x = xtr[idx]
            flip = torch.from_numpy(rng.random(batch) < 0.5)
            x[flip] = x[flip].flip(3)
            loss = F.cross_entropy(model(x), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += batch
        train_s = time.perf_counter() - t0
        model.eval()
        top1 = top5 = 0
        with torch.no_grad():
            for k in range(0, len(yte), 500):
                z = model(xte[k:k + 500])
                t5 = z.topk(5, 1).indices
                y = yte[k:k + 500]
                top1 += (t5[:, 0] == y).sum().item()
                top5 += (t5 == y[:, None]).any(1).sum().item()
        sched.step()
        print(json.dumps(dict(epoch=epoch + 1, testTop1=top1 / len(yte), testTop5=top5 / len(yte),
                              seconds=time.perf_counter() - start, imagesPerSecond=seen / train_s,
                              torch=torch.__version__, threads=a.threads)), flush=True)


if __name__ == '__main__':
    main()
