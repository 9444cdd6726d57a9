#!/usr/bin/python3
"""PyTorch's float32 accuracy on inputs with a large mean, for normlab's float
accumulation to be held to (tests/test_accuracy.cpp).

Run by hand with the system python that has torch (the build never runs it):

    /usr/bin/python3 tests/golden/make_adversarial.py

It rewrites tests/golden/adversarial_offset.json. Each case's input is
x[i] = offset + spread * u(i), rounded to float32, with u(i) uniform on
[-sqrt(3), sqrt(3)] (standard deviation 1) from splitmix64(seed + i): the C++
test draws the same floats without any file. dy[i] likewise, from
splitmix64(seed + 2^32 + i), with offset 0 and spread 1. PyTorch's float32
module runs on x and dy; the reference is the same module in float64 on the
same (float32-valued) inputs. Recorded per output: the scaled error
max |got - want| / max |want| (y, dx, dgamma, dbeta), and for the statistics
|mean - mean_ref| / std_ref and |rstd / rstd_ref - 1|, each the largest over
the groups.
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
EPS = 1e-5

# (name, normlab spec, shape, offset, spread, seed): long groups whose mean is
# 1e4 standard deviations from zero.
CASES = [
    ("layer_rows", {"type": "layer"}, [4, 1 << 18], 1e4, 1.0, 1),
    ("layer_rows_small_spread", {"type": "layer"}, [4, 1 << 18], 1e2, 1e-2, 2),
    ("batch_nchw", {"type": "batch"}, [16, 4, 128, 128], 1e4, 1.0, 3),
    ("group_nchw", {"type": "group", "groups": 2}, [2, 4, 256, 256], 1e4, 1.0, 4),
    ("instance_nchw", {"type": "instance", "affine": True}, [2, 4, 256, 256], 1e4, 1.0, 5),
]

MASK = (1 << 64) - 1


def splitmix64(counter):
    """splitmix64 of an array of uint64 counters (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = counter * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def draw(shape, offset, spread, seed):
    """float32 values offset + spread * u, u uniform with standard deviation 1."""
    n = int(np.prod(shape))
    counter = np.arange(n, dtype=np.uint64) + np.uint64(seed)
    unit = (splitmix64(counter) >> np.uint64(11)).astype(np.float64) * 2.0**-53  # [0, 1)
    u = (2.0 * unit - 1.0) * math.sqrt(3.0)
    return torch.from_numpy((offset + spread * u).astype(np.float32).reshape(shape))


def run(spec, x, dy):
    """y, dx, parameter gradients and per-group (mean, rstd) in x's dtype."""
    x = x.clone().requires_grad_(True)
    channels = x.shape[1]
    kind = spec["type"]
    if kind == "layer":
        gamma = torch.ones(x.shape[1:], dtype=x.dtype, requires_grad=True)
        beta = torch.zeros(x.shape[1:], dtype=x.dtype, requires_grad=True)
        normalized = list(x.shape[1:])
        y = F.layer_norm(x, normalized, gamma, beta, EPS)
        _, mean, rstd = torch.ops.aten.native_layer_norm(x.detach(), normalized, None, None, EPS)
    else:
        gamma = torch.ones(channels, dtype=x.dtype, requires_grad=True)
        beta = torch.zeros(channels, dtype=x.dtype, requires_grad=True)
        if kind == "batch":
            y = F.batch_norm(x, None, None, gamma, beta, True, 0.1, EPS)
            _, mean, rstd = torch.ops.aten.native_batch_norm(x.detach(), None, None, None, None,
                                                            True, 0.1, EPS)
        else:
            groups = channels if kind == "instance" else spec["groups"]
            y = F.group_norm(x, groups, gamma, beta, EPS)
            n = x.shape[0]
            _, mean, rstd = torch.ops.aten.native_group_norm(
                x.detach(), None, None, n, channels, x[0, 0].numel(), groups, EPS)
    y.backward(dy.to(x.dtype))
    return {"y": y.detach(), "dx": x.grad, "dgamma": gamma.grad, "dbeta": beta.grad,
            "mean": mean.reshape(-1), "rstd": rstd.reshape(-1)}


def main():
    cases = []
    for name, spec, shape, offset, spread, seed in CASES:
        x = draw(shape, offset, spread, seed)
        dy = draw(shape, 0.0, 1.0, seed + (1 << 32))
        got = run(spec, x, dy)
        want = run(spec, x.double(), dy.double())
        errors = {}
        for key in ("y", "dx", "dgamma", "dbeta"):
            scale = want[key].abs().max().item()
            errors[key] = (got[key].double() - want[key]).abs().max().item() / scale
        std = 1 / want["rstd"]
        errors["mean"] = ((got["mean"].double() - want["mean"]).abs() / std).max().item()
        errors["rstd"] = (got["rstd"].double() / want["rstd"] - 1).abs().max().item()
        cases.append({"name": name, "spec": spec, "shape": shape, "offset": offset,
                      "spread": spread, "seed": seed, "eps": EPS, "torch_float32": errors})
        print(name, {k: f"{v:.3g}" for k, v in errors.items()})
    with open(os.path.join(HERE, "adversarial_offset.json"), "w") as f:
        json.dump({"generator": "tests/golden/make_adversarial.py", "torch": torch.__version__,
                   "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
