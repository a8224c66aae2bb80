"""PyTorch peer of the `conv` benchmark suite (bench/conv.ts).

Reads a spec (JSON, written by the suite): the device ("cpu" or "cuda"), the precision, the
iteration counts and every layer with its shapes and passes (bench/layers.ts). For each layer it
reads the inputs our side used (raw float32 files <layer>.x.f32, .w.f32, .dy.f32, int32
.labels.i32 in the spec's folder), runs each pass once, and compares the result with ours
(<layer>.<pass>.ours.f32): the normwise relative error ||theirs - ours|| / ||ours||. Then it times
the pass: --warmup untimed runs, then --iters timed ones, each after a write over a buffer larger
than the last-level cache; CUDA events on a GPU, time.perf_counter on the CPU (whose ops run
synchronously). Prints one JSON object on stdout and nothing else.

Precision: fp32 turns TF32 off (cuDNN and cuBLAS) and keeps float32 everywhere; tf32 allows it;
bf16 runs the GEMM-like layers on bfloat16 copies of the inputs. cudnn.benchmark is on, so each
convolution runs the algorithm cuDNN found fastest for its shape.

Passes: conv and linear have fwd, bwd_data (input gradient) and bwd_filter (weight gradient),
called as the aten ops autograd itself calls; the other layers have fwd and bwd (autograd's
backward of the layer alone, its forward graph kept, only the backward timed).

Usage: python3 bench/peers/torch_kernels.py --spec FILE
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(path, shape, dtype=np.float32):
    a = np.fromfile(path, dtype=dtype)
    if shape is None:
        return torch.from_numpy(a)
    return torch.from_numpy(a.reshape(shape) if len(shape) else a.reshape(()))


def error(theirs, ours):
    t = theirs.detach().float().cpu().reshape(-1).double()
    o = ours.reshape(-1).double()
    if t.numel() != o.numel():
        return float("inf")
    den = max(float(torch.linalg.norm(o)), 1e-30)
    e = float(torch.linalg.norm(t - o)) / den
    return e if e == e else float("inf")


class Clock:
    """Times a callable with the cache flushed before each timed run."""

    def __init__(self, device):
        self.device = device
        if device == "cuda":
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
            self.flush_buf = torch.empty(max(2 * l2, 8 << 20), dtype=torch.uint8, device="cuda")
        else:
            self.flush_buf = torch.empty(128 << 20, dtype=torch.uint8)
        self.value = 0

    def flush(self):
        self.value = (self.value + 1) & 0xFF
        self.flush_buf.fill_(self.value)

    def time(self, fn, iters, warmup):
        for _ in range(warmup):
            fn()
        if self.device == "cuda":
            torch.cuda.synchronize()
            pairs = []
            for _ in range(iters):
                self.flush()
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                pairs.append((a, b))
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in pairs]
        out = []
        for _ in range(iters):
            self.flush()
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
        return out


def mask_check(out, inp, p):
    out = out.detach().float().cpu().reshape(-1)
    inp = inp.detach().float().cpu().reshape(-1)
    zero = out == 0
    share = float(zero.float().mean())
    kept = ~zero
    ok = bool(torch.allclose(out[kept], inp[kept] / (1 - p), rtol=1e-5, atol=1e-6))
    return ok and abs(share - p) < 0.05 + 3 / max(1, out.numel()) ** 0.5, share


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", required=True)
    spec = json.load(open(ap.parse_args().spec))
    device = spec["device"]
    precision = spec["precision"]
    torch.set_num_threads(int(spec["threads"]))
    torch.backends.cudnn.benchmark = True
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    gemm_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    lrn = spec["lrn"]
    p_drop = spec["dropout"]
    d = spec["dir"]
    clock = Clock(device)
    iters, warmup = int(spec["iters"]), int(spec["warmup"])
    if device == "cuda":
        where = torch.cuda.get_device_name(0)
        engine = "cuDNN %s" % torch.backends.cudnn.version()
    else:
        where = "cpu"
        engine = "oneDNN" if torch.backends.mkldnn.is_available() else "native"
    rows = []

    for layer in spec["layers"]:
        name, kind = layer["name"], layer["kind"]
        base = os.path.join(d, name)
        x = load(base + ".x.f32", layer["x"]).to(device)
        w = load(base + ".w.f32", layer["w"]).to(device) if layer.get("w") else None
        dy = load(base + ".dy.f32", layer["y"]).to(device) if kind != "xent" else None
        labels = load(base + ".labels.i32", [layer["x"][0]], np.int32).long().to(device) if kind == "xent" else None
        for pas in layer["passes"]:
            ours = load("%s.%s.ours.f32" % (base, pas), None)
            version = "torch %s, %s" % (torch.__version__, engine)
            if kind == "conv":
                s, p, g = layer["stride"], layer["padding"], layer["groups"]
                xc, wc, dyc = x.to(gemm_dtype), w.to(gemm_dtype), dy.to(gemm_dtype)
                if pas == "fwd":
                    fn = lambda: F.conv2d(xc, wc, None, s, p, 1, g)
                else:
                    mask = [pas == "bwd_data", pas == "bwd_filter", False]
                    # The aten op autograd calls for a convolution's backward.
                    fn = (lambda m: lambda: torch.ops.aten.convolution_backward(
                        dyc, xc, wc, None, [s, s], [p, p], [1, 1], False, [0, 0], g, m)[0 if m[0] else 1])(mask)
            elif kind == "linear":
                xc, wc, dyc = x.to(gemm_dtype), w.to(gemm_dtype), dy.to(gemm_dtype)
                fn = {"fwd": lambda: F.linear(xc, wc),
                      "bwd_data": lambda: dyc.mm(wc),
                      "bwd_filter": lambda: dyc.t().mm(xc)}[pas]
            else:
                if kind == "relu":
                    f = F.relu
                elif kind == "lrn":
                    f = lambda t: F.local_response_norm(t, lrn["size"], lrn["alpha"], lrn["beta"], lrn["k"])
                elif kind == "pool":
                    f = lambda t: F.max_pool2d(t, 3, 2)
                elif kind == "dropout":
                    f = lambda t: F.dropout(t, p_drop, True)
                else:
                    f = lambda t: F.cross_entropy(t, labels)
                if pas == "fwd":
                    fn = (lambda f: lambda: f(x))(f)
                else:
                    xg = x.clone().requires_grad_(True)
                    y = f(xg)
                    g_out = torch.ones((), device=device) if kind == "xent" else dy
                    fn = (lambda y, xg, g_out: lambda: torch.autograd.grad(y, xg, g_out, retain_graph=True)[0])(y, xg, g_out)
            out = fn()
            row = {"layer": name, "pass": pas, "version": version}
            if kind == "dropout":
                ok, share = mask_check(out, x if pas == "fwd" else dy, p_drop)
                row.update(error=None, maskOk=ok, zeroShare=share)
            else:
                row["error"] = error(out, ours)
            del out
            row["samples"] = clock.time(fn, iters, warmup)
            rows.append(row)
            print("torch_kernels: %s %s %.3f ms" % (name, pas, statistics.median(row["samples"])), file=sys.stderr)
    json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
               "device": where, "threads": torch.get_num_threads(), "rows": rows}, sys.stdout)


if __name__ == "__main__":
    main()
