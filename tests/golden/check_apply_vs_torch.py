#!/usr/bin/python3
"""Random conformance check of `normlab apply` against PyTorch 1.13 (run by hand).

For random shapes and parameters, every norm, float32 and float64, train and eval: writes x, dy and
the parameters as .npy, runs `normlab apply`, and compares y, dx, the parameter gradients and the
updated running statistics with torch autograd computed in float64. Prints the worst relative error
per (norm, dtype) and exits non-zero if any exceeds 1e-5 (float32) or 1e-10 (float64).

    /usr/bin/python3 tests/golden/check_apply_vs_torch.py [--normlab build/normlab] [--trials 20]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(1)


def rel_err(got, want, floor):
    # Relative to the array's own scale, floored by the upstream gradient's: a gradient that is
    # exactly 0 in theory (WeightNorm over one-element slices) is rounding noise on both sides.
    scale = max(np.abs(want).max(), floor)
    return float(np.max(np.abs(got - want) / (np.abs(want) + scale)))


def random_case(norm):
    n = int(rng.integers(1, 5)) if norm not in ("batch",) else int(rng.integers(2, 5))
    c = int(rng.integers(1, 7))
    spatial = [int(s) for s in rng.integers(2, 6, size=int(rng.integers(0 if norm in ("batch", "layer", "weight") else 1, 3)))]
    if norm == "group":
        c = int(rng.choice([2, 3, 4, 6]))
    return [n, c] + spatial


def torch_reference(norm, spec, x, dy, params, mode):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in ("gamma", "beta", "g")) for k, v in params.items()}
    state = {}
    if norm == "batch":
        rm, rv = p["running_mean"].detach().clone(), p["running_var"].detach().clone()
        y = F.batch_norm(xt, rm, rv, p["gamma"], p["beta"], training=(mode == "train"), momentum=0.1, eps=1e-5)
        if mode == "train":
            state = {"running_mean": rm.numpy(), "running_var": rv.numpy()}
    elif norm == "layer":
        y = F.layer_norm(xt, x.shape[1:], p["gamma"], p["beta"], eps=1e-5)
    elif norm == "instance":
        y = F.instance_norm(xt, weight=p["gamma"], bias=p["beta"], eps=1e-5)
    elif norm == "group":
        y = F.group_norm(xt, spec["groups"], p["gamma"], p["beta"], eps=1e-5)
    elif norm == "weight":
        dims = tuple(range(1, xt.dim()))
        y = p["g"].reshape([-1] + [1] * (xt.dim() - 1)) * xt / (xt * xt).sum(dim=dims, keepdim=True).sqrt()
    y.backward(torch.tensor(dy, dtype=torch.float64))
    grads = {"d" + k: v.grad.numpy() for k, v in p.items() if v.requires_grad}
    return y.detach().numpy(), xt.grad.numpy(), grads, state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--normlab", default="build/normlab")
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    worst = {}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(args.trials):
            for norm in ("batch", "layer", "instance", "group", "weight"):
                for dtype in (np.float32, np.float64):
                    for mode in ("train", "eval"):
                        shape = random_case(norm)
                        x = (rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(dtype)
                        dy = rng.normal(size=shape).astype(dtype)
                        c = shape[1] if norm != "weight" else shape[0]
                        spec = {"type": norm}
                        params = {}
                        if norm == "group":
                            spec["groups"] = int(rng.choice([g for g in (1, 2, 3) if c % g == 0]))
                        if norm == "instance":
                            spec["affine"] = True
                        if norm == "layer":
                            params = {"gamma": rng.normal(size=shape[1:]), "beta": rng.normal(size=shape[1:])}
                        elif norm == "weight":
                            params = {"g": rng.uniform(0.5, 2, size=c)}
                        else:
                            params = {"gamma": rng.normal(size=c), "beta": rng.normal(size=c)}
                        if norm == "batch":
                            params["running_mean"] = rng.normal(size=c)
                            params["running_var"] = rng.uniform(0.5, 2, size=c)
                        params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
                        paths = []
                        for name, value in params.items():
                            path = os.path.join(tmp, name + ".npy")
                            np.save(path, value)
                            paths += ["--param", f"{name}={path}"]
                        np.save(os.path.join(tmp, "x.npy"), x)
                        np.save(os.path.join(tmp, "dy.npy"), dy)
                        out = os.path.join(tmp, f"out{trial}{norm}{mode}{np.dtype(dtype).itemsize}")
                        subprocess.run([args.normlab, "apply", "--norm", json.dumps(spec), "--input",
                                        os.path.join(tmp, "x.npy"), "--grad", os.path.join(tmp, "dy.npy"),
                                        "--mode", mode, "--out", out] + paths, check=True, stdout=subprocess.DEVNULL)
                        y, dx, grads, state = torch_reference(norm, spec, x.astype(np.float64), dy.astype(np.float64),
                                                              {k: v.astype(np.float64) for k, v in params.items()}, mode)
                        want = {"y": y, "dx": dx, **grads, **state}
                        key = (norm, np.dtype(dtype).name)
                        for name, value in want.items():
                            got = np.load(os.path.join(out, name + ".npy"))
                            assert got.dtype == dtype, (name, got.dtype)
                            e = rel_err(got.astype(np.float64), value, float(np.abs(dy).max()))
                            worst[key] = max(worst.get(key, 0.0), e)
                            if e > (1e-5 if dtype == np.float32 else 1e-10):
                                failed = True
                                print(f"MISMATCH {norm} {np.dtype(dtype).name} {mode} {shape} {name}: {e:.2e}")
    for (norm, dtype), e in sorted(worst.items()):
        print(f"{norm:9} {dtype:8} worst relative error {e:.2e}")
    print(f"{args.trials} trials x 5 norms x 2 dtypes x 2 modes: {'FAILED' if failed else 'all within tolerance'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
