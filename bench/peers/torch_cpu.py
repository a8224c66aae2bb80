"""PyTorch peer of the `cpu` benchmark suite (bench/main.ts cpu).

Measures AlexNet-mini (docs/alexnet.md) on the CPU with PyTorch, at the
same layer shapes and with the same recipe as bench/alexnet_mini.ts:
  - per op: the forward time of each layer alone, and the time of y.backward(grad_output)
    through that layer alone (a one-op graph over a leaf input, as the TypeScript side does);
  - the SGD update of all parameters (momentum 0.9, weight decay 5e-4, lr 0.01);
  - the whole training step (forward, loss, backward, SGD) in images per second.
Each measurement runs --warmup untimed iterations, then --iters timed ones, and reports the
median in milliseconds. PyTorch's CPU ops run synchronously, so the clock (time.perf_counter)
stops when the work is done. The thread count is set with torch.set_num_threads (pass the same
count our CPU device uses). Prints one JSON object on stdout and nothing else.

Usage: /usr/bin/python3 bench/peers/torch_cpu.py [--batch 128] [--width 0.5] [--iters 30]
       [--warmup 3] [--threads 2] [--seed 1] [--no-ops]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
POOL_KERNEL, POOL_STRIDE = 3, 2
DROPOUT_P = 0.5
CLASSES = 10
SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)


def alexnet_mini(batch, width):
    """The layers of AlexNet-mini with their shapes; the same list as bench/alexnet_mini.ts."""
    def ch(c):
        return max(2, int(math.floor(c * width + 0.5)))

    layers = []
    shape = [batch, 1, 28, 28]

    def add(layer, out):
        nonlocal shape
        layer.update(inShape=shape, outShape=out)
        layers.append(layer)
        shape = out

    def conv(n, f, k, pad, groups):
        N, C, H, W = shape
        fan_in = (C // groups) * k * k
        add(dict(name=f"conv{n}", kind="conv", weight=[f, C // groups, k, k], padding=pad,
                 groups=groups, std=math.sqrt(2 / fan_in)),
            [N, f, H + 2 * pad - k + 1, W + 2 * pad - k + 1])
        add(dict(name=f"relu{n}", kind="relu"), shape)

    def pool(n):
        N, C, H, W = shape
        o = lambda d: (d - POOL_KERNEL) // POOL_STRIDE + 1
        add(dict(name=f"pool{n}", kind="pool"), [N, C, o(H), o(W)])

    def fc(n, m, last):
        N, K = shape
        add(dict(name=f"fc{n}", kind="linear", weight=[m, K], std=math.sqrt(2 / K)), [N, m])
        if last:
            return
        add(dict(name=f"relu{n}", kind="relu"), shape)
        add(dict(name=f"drop{n}", kind="dropout"), shape)

    conv(1, ch(64), 5, 2, 1)
    add(dict(name="lrn1", kind="lrn"), shape)
    pool(1)
    conv(2, ch(128), 5, 2, 2)
    add(dict(name="lrn2", kind="lrn"), shape)
    pool(2)
    conv(3, ch(192), 3, 1, 1)
    conv(4, ch(192), 3, 1, 2)
    conv(5, ch(128), 3, 1, 2)
    pool(5)
    add(dict(name="flatten", kind="flatten"), [shape[0], shape[1] * shape[2] * shape[3]])
    fc(6, ch(1024), False)
    fc(7, ch(1024), False)
    fc(8, CLASSES, True)
    add(dict(name="loss", kind="loss"), [])
    return layers


def init_params(layer):
    """He-normal weight, zero bias (leaves that collect gradients); None for layers without."""
    if "weight" not in layer:
        return None
    w = torch.empty(layer["weight"]).normal_(0.0, layer["std"]).requires_grad_()
    b = torch.zeros(layer["weight"][0], requires_grad=True)
    return w, b


def apply_layer(layer, x, p, labels):
    kind = layer["kind"]
    if kind == "conv":
        return F.conv2d(x, p[0], p[1], padding=layer["padding"], groups=layer["groups"])
    if kind == "relu":
        return F.relu(x)
    if kind == "lrn":
        return F.local_response_norm(x, **LRN)
    if kind == "pool":
        return F.max_pool2d(x, POOL_KERNEL, POOL_STRIDE)
    if kind == "flatten":
        return torch.flatten(x, 1)
    if kind == "linear":
        return F.linear(x, p[0], p[1])
    if kind == "dropout":
        return F.dropout(x, DROPOUT_P, training=True)
    if kind == "loss":
        return F.cross_entropy(x, labels)
    raise ValueError(kind)


def summary(samples):
    s = sorted(samples)
    return dict(median=statistics.median(s), mean=statistics.fmean(s), min=s[0], max=s[-1], n=len(s),
                samples=list(samples))


def ms(t0, t1):
    return (t1 - t0) * 1000.0


def measure_ops(layers, args):
    out = []
    labels = torch.randint(0, CLASSES, (args.batch,))
    for index, layer in enumerate(layers):
        if layer["kind"] == "flatten":
            continue
        # The network's input does not need a gradient; every later layer's input does.
        x = torch.randn(layer["inShape"], requires_grad=index > 0)
        p = init_params(layer)
        leaves = [x] + (list(p) if p else [])
        fwd, bwd = [], []
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            y = apply_layer(layer, x, p, labels)
            t1 = time.perf_counter()
            g = torch.randn_like(y)
            t2 = time.perf_counter()
            y.backward(g)
            t3 = time.perf_counter()
            for leaf in leaves:
                leaf.grad = None
            if i >= args.warmup:
                fwd.append(ms(t0, t1))
                bwd.append(ms(t2, t3))
        out.append(dict(name=layer["name"], kind=layer["kind"], inShape=layer["inShape"],
                        outShape=layer["outShape"], fwd=summary(fwd), bwd=summary(bwd)))
    return out


def network(layers):
    params = {l["name"]: init_params(l) for l in layers if "weight" in l}
    flat = [t for p in params.values() for t in p]
    return params, flat


def forward_loss(layers, params, x, labels):
    h = x
    for layer in layers:
        h = apply_layer(layer, h, params.get(layer["name"]), labels)
    return h


def measure_sgd(layers, args):
    _, flat = network(layers)
    opt = torch.optim.SGD(flat, **SGD)
    for t in flat:
        t.grad = torch.randn_like(t)
    times = []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        opt.step()
        t1 = time.perf_counter()
        if i >= args.warmup:
            times.append(ms(t0, t1))
    return dict(name="sgd", kind="sgd", params=sum(t.numel() for t in flat), fwd=summary(times))


def measure_step(layers, args):
    params, flat = network(layers)
    opt = torch.optim.SGD(flat, **SGD)
    times, losses = [], []
    for i in range(args.warmup + args.iters):
        x = torch.randn(args.batch, 1, 28, 28)
        labels = torch.randint(0, CLASSES, (args.batch,))
        t0 = time.perf_counter()
        loss = forward_loss(layers, params, x, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        losses.append(loss.item())
        if i >= args.warmup:
            times.append(ms(t0, t1))
    st = summary(times)
    return dict(ms=st, imagesPerSec=args.batch / (st["median"] / 1000.0), lossFirst=losses[0],
                lossLast=losses[-1], params=sum(t.numel() for t in flat))


def blas_info():
    """Which BLAS PyTorch's linear layers use: Debian's build links the generic libblas.so.3,
    which is the unoptimised reference BLAS unless OpenBLAS or BLIS provides it."""
    config = torch.__config__.show()
    kind = next((part.split("=", 1)[1] for part in config.replace(",", " ").split()
                 if part.startswith("BLAS_INFO=")), "unknown")
    library = None
    for candidate in ("/usr/lib/x86_64-linux-gnu/libblas.so.3", "/usr/lib/aarch64-linux-gnu/libblas.so.3"):
        if os.path.exists(candidate):
            library = os.path.realpath(candidate)
            break
    return dict(info=kind, library=library)


def main():
    ap = argparse.ArgumentParser(description="PyTorch CPU peer of bench/main.ts cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-ops", action="store_true", help="only the whole training step")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)
    layers = alexnet_mini(args.batch, args.width)

    result = dict(
        driver="pytorch",
        torch=torch.__version__,
        python=sys.version.split()[0],
        threads=torch.get_num_threads(),
        mkldnn=torch.backends.mkldnn.is_available(),
        blas=blas_info(),
        batch=args.batch,
        width=args.width,
        iters=args.iters,
        warmup=args.warmup,
    )
    if not args.no_ops:
        result["ops"] = measure_ops(layers, args)
        result["sgd"] = measure_sgd(layers, args)
    result["step"] = measure_step(layers, args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
