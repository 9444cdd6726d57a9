#!/usr/bin/python3
"""Norm kernel speed of normlab next to PyTorch's CPU kernels, in the same run.

Runs `normlab bench --json` (which also measures the machine's bandwidth), then
times each of its cases in PyTorch with torch.set_num_threads matched:
F.batch_norm, F.layer_norm, F.instance_norm, F.group_norm, torch._weight_norm
(RMSNorm, FRN and EvoNorm-S0: composites of elementwise ops, torch 1.13 has no
kernel for them). Norms without a PyTorch peer (the registry's torch_peer trait, read from
`normlab list norms --json`: ghost, batch_renorm, sync_batch, ...) are left out, and named on
stderr. Dynamic Tanh, Switchable Norm, MABN and Cross-Iteration BN (without a layer
in front, as `normlab bench` runs it) are timed against their golden references, written in torch ops in tests/golden/make_golden.py; frozen
BatchNorm ("frozen": true) is F.batch_norm with the running statistics in both modes.
A spec with "layout": "nhwc" (its --shape given as N,H,W,C) is timed in PyTorch on
channels_last tensors of the same (N, C, H, W) tensor.
Forward train and eval run with autograd recording on a leaf that requires
grad, as in training; backward times y.backward(dy) with a precomputed dy
(each preceded by an untimed forward). Medians after a warm-up, like normlab's.
The ratio is torch time / normlab time: above 1, normlab is faster.
--dtype bfloat16 times normlab's Norm<bfloat16> (`normlab bench --dtype bfloat16`)
against the same PyTorch calls on bfloat16 tensors and parameters (a module after
.to(torch.bfloat16)); both count 2 bytes a value.

Run by hand with Debian's python3-torch (not the pyenv python3 on PATH):
    /usr/bin/python3 scripts/compare_torch.py [--threads 1,2] [--norm batch ...]
        [--shape 32,64,56,56 ...] [--repeats 10] [--rounds 1] [--dtype float32|float64|bfloat16]
        [--normlab build/normlab]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import make_golden  # noqa: E402  (the PyTorch references of the norms torch lacks)

# Norms whose peer is their golden reference module, written in torch ops.
REFERENCE_PEERS = ("dyt", "switchable", "mabn", "cross_iteration_batch")
PHASES = ("forward", "forward_eval", "backward")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def torch_peers(normlab):
    """The norm types that have a PyTorch peer here, by the registry's torch_peer trait."""
    out = subprocess.run([normlab, "list", "norms", "--json"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return {norm["type"] for norm in json.loads(out) if norm["traits"]["torch_peer"]}


def normlab_rows(args, threads):
    command = [args.normlab, "bench", "--json", "--threads", str(threads), "--repeats",
               str(args.repeats), "--dtype", args.dtype]
    if args.norm:
        command += ["--norm"] + args.norm
    if args.shape:
        command += ["--shape"] + args.shape
    if args.seconds:
        command += ["--seconds", str(args.seconds)]
    # stderr (the bandwidth header) goes straight to ours.
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def torch_case(spec, shape, dtype, memory_format=torch.contiguous_format):
    """(leaf x, forward(train: bool) -> y, label note) for a resolved normlab spec; shape is
    (N, C, ...) whatever the layout, memory_format torch.channels_last for "layout": "nhwc"."""
    kind = spec["type"]
    x = torch.randn(*shape, dtype=dtype).add_(0.5).contiguous(memory_format=memory_format)
    x.requires_grad_()

    def param(size, value):
        return torch.full(size, value, dtype=dtype, requires_grad=True)

    eps = spec.get("eps")
    if kind in ("batch", "instance"):
        channels = shape[1]
        affine = spec.get("affine", kind == "batch")
        w, b = (param((channels,), 1.0), param((channels,), 0.0)) if affine else (None, None)
        track = spec.get("track_running_stats", kind == "batch")
        rm = torch.zeros(channels, dtype=dtype) if track else None
        rv = torch.ones(channels, dtype=dtype) if track else None
        momentum = spec.get("momentum")
        momentum = 0.1 if momentum is None else momentum  # cumulative average: same work
        if kind == "batch" and spec.get("frozen", False):
            return x, lambda train: F.batch_norm(x, rm, rv, w, b, False, momentum, eps), ""
        if kind == "batch":
            return x, lambda train: F.batch_norm(x, rm, rv, w, b, train or not track, momentum, eps), ""
        return x, lambda train: F.instance_norm(x, rm, rv, w, b, train or not track, momentum, eps), ""
    if kind == "group":
        channels = shape[1]
        w, b = (param((channels,), 1.0), param((channels,), 0.0)) if spec.get("affine", True) else (None, None)
        return x, lambda train: F.group_norm(x, spec["groups"], w, b, eps), ""
    if kind in ("layer", "rms"):
        normalized = list(spec.get("normalized_shape") or shape[1:])
        dims = tuple(range(len(shape) - len(normalized), len(shape)))
        if kind == "rms" and eps is None:
            eps = torch.finfo(dtype).eps
        affine = spec.get("affine", True)
        if spec.get("channel_affine"):
            view = [1, shape[1]] + [1] * (len(shape) - 2)
            w = param((shape[1],), 1.0) if affine else None
            b = param((shape[1],), 0.0) if affine and kind == "layer" else None
            scale = (lambda y: y * w.view(view)) if w is not None else (lambda y: y)
            shift = (lambda y: y + b.view(view)) if b is not None else (lambda y: y)
        else:
            w = param(normalized, 1.0) if affine else None
            b = param(normalized, 0.0) if affine and kind == "layer" else None
            scale = (lambda y: y * w) if w is not None else (lambda y: y)
            shift = (lambda y: y + b) if b is not None else (lambda y: y)
        if kind == "rms":
            return x, lambda train: scale(x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)), \
                "composite"
        if spec.get("channel_affine"):
            return x, lambda train: shift(scale(F.layer_norm(x, normalized, None, None, eps))), "composite"
        return x, lambda train: F.layer_norm(x, normalized, w, b, eps), ""
    if kind == "weight":
        dim = spec.get("dim", 0) % len(shape)
        with torch.no_grad():
            g = torch.norm_except_dim(x, 2, dim).clone()
        g.requires_grad_()
        return x, lambda train: torch._weight_norm(x, g, dim), ""
    if kind in ("frn", "evonorm_s0"):
        channels = shape[1]
        view = [1, channels] + [1] * (len(shape) - 2)
        w, b = param((channels,), 1.0), param((channels,), 0.0)
        if kind == "frn":
            dims = tuple(range(2, len(shape)))
            tau = param((channels,), 0.0) if spec.get("tlu", True) else None

            def frn(train):
                y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps) * w.view(view) + b.view(view)
                return torch.maximum(y, tau.view(view)) if tau is not None else y
            return x, frn, "composite"
        v = param((channels,), 1.0)
        groups = min(spec.get("groups", 32), channels)

        def evonorm(train):
            grouped = x.reshape(shape[0], groups, -1)
            std = torch.sqrt(grouped.var(-1, unbiased=False, keepdim=True) + eps)
            y = (x * torch.sigmoid(v.view(view) * x)).reshape(shape[0], groups, -1) / std
            return y.reshape(shape) * w.view(view) + b.view(view)
        return x, evonorm, "composite"
    if kind in REFERENCE_PEERS:
        module = make_golden.torch_module(spec, shape, dtype).to(dtype)

        def reference(train):
            module.train(train)
            return module(x)
        return x, reference, "golden reference in torch ops"
    raise ValueError("no PyTorch equivalent for norm type " + kind)


def median_ms(call, repeats, before=None):
    """Median wall and CPU ms of `repeats` timed calls after one warm-up; `before` runs
    untimed ahead of each."""
    if before:
        before()
    call()
    wall, cpu = [], []
    for _ in range(repeats):
        if before:
            before()
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def torch_times(row, repeats):
    dtype = DTYPES[row["dtype"]]
    torch.manual_seed(0)
    shape, memory_format = row["shape"], torch.contiguous_format
    if row["spec"].get("layout") == "nhwc":
        # normlab's (N, H, W, C) is PyTorch's (N, C, H, W) in channels_last memory.
        if len(shape) != 4:
            raise ValueError("nhwc is compared on 4-D inputs (torch.channels_last)")
        shape, memory_format = [shape[0], shape[3], shape[1], shape[2]], torch.channels_last
    x, forward, note = torch_case(row["spec"], shape, dtype, memory_format)
    dy = torch.randn(*shape, dtype=dtype).contiguous(memory_format=memory_format)
    state = {}

    def fresh_graph():
        x.grad = None
        state["y"] = forward(True)

    measured = {
        "forward": median_ms(lambda: forward(True), repeats),
        "forward_eval": median_ms(lambda: forward(False), repeats),
        "backward": median_ms(lambda: state["y"].backward(dy), repeats, before=fresh_graph),
    }
    times = {phase: wall for phase, (wall, _) in measured.items()}
    # Like normlab's cpu_share: well below 1, the process waited for a CPU (busy machine).
    wall_total = sum(wall for wall, _ in measured.values())
    cpu_total = sum(cpu for _, cpu in measured.values()) / torch.get_num_threads()
    return times, min(1.0, cpu_total / wall_total), note


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--normlab", default=os.path.join(ROOT, "build", "normlab"))
    parser.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    parser.add_argument("--norm", nargs="*", help="as normlab bench --norm")
    parser.add_argument("--shape", nargs="*", help="as normlab bench --shape")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seconds", type=float, help="passed to normlab bench")
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    parser.add_argument("--json", action="store_true", help="also print one JSON line per case")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run everything this many times, interleaved, and keep each side's "
                             "best median per case (a shared VM's neighbours come and go)")
    args = parser.parse_args()

    header = (f"{'norm':<9} {'shape':<15} {'thr':>3} | {'normlab ms fwd/eval/bwd':>24} | "
              f"{'torch ms fwd/eval/bwd':>24} | {'torch/normlab':>17} | {'normlab %bw f/e/b':>17} | "
              "cpu n/t")
    lines = []
    busy = False
    peers = torch_peers(args.normlab)
    left_out = set()
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        rounds = []  # per round: [(normlab row, torch ms, torch cpu share, note)]
        for _ in range(args.rounds):
            rows = normlab_rows(args, threads)
            left_out |= {r["spec"]["type"] for r in rows if r["spec"]["type"] not in peers}
            rows = [r for r in rows if r["spec"]["type"] in peers]
            rounds.append([(row, *torch_times(row, args.repeats)) for row in rows])
        for case in zip(*rounds):
            row, _, _, note = case[0]
            ours = [min(c[0][p + "_ms"] for c in case) for p in PHASES]
            theirs = [min(c[1][p] for c in case) for p in PHASES]
            bandwidth = max(c[0]["bandwidth_gbs"] for c in case)
            pct = [100 * row[p + "_bytes"] / (ms * 1e6) / bandwidth for p, ms in zip(PHASES, ours)]
            cpu_share = max(c[0]["cpu_share"] for c in case)
            torch_cpu_share = max(c[2] for c in case)
            busy = busy or min(torch_cpu_share, cpu_share) < 0.9
            ratios = [t / n for t, n in zip(theirs, ours)]
            shape = "x".join(str(s) for s in row["shape"])
            lines.append(
                f"{row['norm']:<9} {shape:<15} {threads:>3} | "
                + " ".join(f"{v:7.2f}" for v in ours) + " | "
                + " ".join(f"{v:7.2f}" for v in theirs) + " | "
                + " ".join(f"{r:5.2f}" for r in ratios) + " | "
                + " ".join(f"{v:4.0f}%" for v in pct)
                + f" | {100 * cpu_share:3.0f}% {100 * torch_cpu_share:3.0f}%"
                + (f"  (torch: {note})" if note else ""))
            if args.json:
                print(json.dumps({**row, "rounds": args.rounds, "bandwidth_gbs": bandwidth,
                                  **{p + "_ms": ms for p, ms in zip(PHASES, ours)},
                                  **{p + "_pct": v for p, v in zip(PHASES, pct)},
                                  "torch_ms": dict(zip(PHASES, theirs)),
                                  "torch_cpu_share": torch_cpu_share, "torch_note": note,
                                  "torch_over_normlab": dict(zip(PHASES, ratios))}))
            sys.stdout.flush()
    if left_out:
        print("left out (no PyTorch peer): " + ", ".join(sorted(left_out)), file=sys.stderr)
    best = f", best of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"PyTorch {torch.__version__}, {args.dtype}, median of {args.repeats} after a warm-up"
          f"{best}; torch/normlab > 1: normlab is faster")
    print(header)
    print("\n".join(lines))
    if busy:
        print("warning: the machine was busy (cpu n/t: share of the wall time normlab / torch had "
              "their CPUs, below 90% somewhere): times and ratios are unreliable")


if __name__ == "__main__":
    main()
