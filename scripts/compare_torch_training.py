#!/usr/bin/python3
"""Training speed of normlab next to PyTorch, measured in the same run.

For cnn3 and mlp2 at batch 64, 8 and 2, with each norm asked for, at 1 and 2
threads, trains the same model on the same number of synthetic images in
PyTorch (torch.set_num_threads) and in normlab (`normlab run` on a synthetic
config with threads_per_cell), and prints images/s for both and their ratio.
The two are measured in interleaved rounds (normlab, torch, normlab, ...) and
each figure is the median of the rounds, so load on a shared machine hits both.

Run by hand with Debian's python3-torch:  /usr/bin/python3 scripts/compare_torch_training.py
Options: --normlab PATH (default build/normlab), --images N (default 4096),
--norms batch group, --threads 1 2, --batches 64 8 2, --models cnn3 mlp2, --rounds 3,
--before PATH (an older normlab build, measured in the same rounds; at 1 thread
only when it predates threads_per_cell)
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
import torch.nn as nn



def norm_layer(norm, channels, spatial):
    if norm == "batch":
        return nn.BatchNorm2d(channels) if spatial else nn.BatchNorm1d(channels)
    if norm == "group":
        return nn.GroupNorm(min(4, channels), channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels) if spatial else nn.LayerNorm(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    return nn.Identity()


def make_model(model, norm):
    bias = norm in ("none", "weight")
    wrap = (lambda m: nn.utils.weight_norm(m)) if norm == "weight" else (lambda m: m)
    if model == "cnn3":
        layers, cin = [], 1
        for i, cout in enumerate((16, 32, 64)):
            layers += [wrap(nn.Conv2d(cin, cout, 3, padding=1, bias=bias)), norm_layer(norm, cout, True), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
        return nn.Sequential(*layers)
    return nn.Sequential(nn.Flatten(),
                         wrap(nn.Linear(784, 256, bias=bias)), norm_layer(norm, 256, False), nn.ReLU(),
                         wrap(nn.Linear(256, 256, bias=bias)), norm_layer(norm, 256, False), nn.ReLU(),
                         nn.Linear(256, 10))


def torch_images_per_second(model_name, norm, batch, images):
    torch.manual_seed(0)
    model = make_model(model_name, norm)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(images, 1, 28, 28)
    y = torch.randint(0, 10, (images,))
    steps = images // batch

    def step(i):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        opt.zero_grad()
        loss_fn(model(xb), yb).backward()
        opt.step()

    for i in range(min(steps, 20)):  # warm-up
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch / (time.perf_counter() - start)


def normlab_images_per_second(binary, model_name, norm, batch, images, threads):
    config = {"name": "speed", "dataset": {"type": "synthetic", "train_size": images, "test_size": 64},
              "model": model_name, "norms": [norm], "batch_sizes": [batch], "seeds": [0], "epochs": 1,
              "optimizer": {"lr": 0.01},
              "evaluation": {"batch_size": 64, "batch_stats_accuracy": False}, "workers": 1}
    if threads != 1:  # only when needed: builds from before the option can be compared at 1
        config["threads_per_cell"] = threads
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        subprocess.run([binary, "run", path, "--out", os.path.join(tmp, "out")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(tmp, "out", "results.jsonl")) as f:
            return json.loads(f.readline())["train_images_per_second"]


def blas_core(binary):
    out = subprocess.run([binary, "list", "blas", "--json"], capture_output=True, text=True)
    if out.returncode != 0:  # a build from before `list blas`
        return "not reported by this build"
    info = json.loads(out.stdout)
    return f"{info['library']} {info['version']} core {info['core']} ({info['selection']})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normlab", default="build/normlab")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--norms", nargs="+", default=["batch", "group"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 8, 2])
    parser.add_argument("--models", nargs="+", default=["cnn3", "mlp2"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=None)
    args = parser.parse_args()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    torch_blas = next((part.split("=", 1)[1] for part in torch.__config__.show().replace(",", "\n").split()
                       if part.startswith("BLAS_INFO=")), "?")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu}, torch {torch.__version__} (BLAS {torch_blas}), "
          f"normlab BLAS: {blas_core(args.normlab)}")
    print(f"{args.images} images per measurement, median of {args.rounds} interleaved rounds")
    if args.before:
        print(f"before: {args.before}, BLAS: {blas_core(args.before)}")
    before_columns = " before img/s | after/before |" if args.before else ""
    print(f"| model | norm | B | threads | normlab img/s | torch img/s | normlab/torch |{before_columns}")
    print("|---" * (7 + (2 if args.before else 0)) + "|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for model_name in args.models:
            for norm in args.norms:
                for batch in args.batches:
                    ours, theirs, before = [], [], []
                    with_before = args.before and threads == 1
                    for _ in range(args.rounds):
                        ours.append(normlab_images_per_second(args.normlab, model_name, norm, batch,
                                                              args.images, threads))
                        theirs.append(torch_images_per_second(model_name, norm, batch, args.images))
                        if with_before:
                            before.append(normlab_images_per_second(args.before, model_name, norm, batch,
                                                                    args.images, threads))
                    a, b = statistics.median(ours), statistics.median(theirs)
                    row = f"| {model_name} | {norm} | {batch} | {threads} | {a:.0f} | {b:.0f} | {a / b:.2f} |"
                    if args.before:
                        c = statistics.median(before) if before else None
                        row += f" {c:.0f} | {a / c:.2f} |" if c else " - | - |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()
