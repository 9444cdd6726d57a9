#!/usr/bin/python3
"""Golden vectors for one training step of a small ResNet, computed by PyTorch 1.13 (CPU).

Run by hand, from anywhere, with the system python that has torch:

    /usr/bin/python3 tests/golden/make_resnet_golden.py

It rewrites tests/golden/resnet/<case>/*.npy and tests/golden/resnet/cases.json;
the build never runs it. tests/test_resnet_golden.cpp checks normlab's
resnet8_w4 against the files, in both activation layouts.

The network is normlab's resnet8_w4 (src/nn/model.cpp), written here with
torch.nn.functional: stem conv3x3 1->4, norm, relu; three stages of one basic
block each (widths 4, 8, 16; strides 1, 2, 2; conv3x3 -> norm -> relu ->
conv3x3 -> norm, plus the identity or a conv1x1/stride -> norm shortcut, then
relu); global average pooling; linear 16 -> 10. Convolutions have no bias (a
norm follows each). The step, all in float64: a train-mode forward of a batch
of 4 images, mean softmax cross-entropy, and backward. (The SGD update is
checked against PyTorch's formula in tests/test_layers.cpp; the files would
double in size for it.)

Files of a case (all .npy, float64):
  x (4, 1, 28, 28), labels (4,)     the batch
  param_KK                           the parameters before the step, in normlab's
                                     Model::parameters() order (cases.json names them)
  logits (4, 10), loss ()            the forward's output and mean loss
  grad_KK                            dLoss/dparam_KK
  running_mean_KK, running_var_KK    batch norm only: each norm's running
                                     statistics after the step, in Model::norms() order
"""

import json
import os
import shutil
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet")
WIDTH, BATCH, CLASSES = 4, 4, 10
BN_EPS, BN_MOMENTUM, GN_EPS, GN_GROUPS = 1e-5, 0.1, 1e-5, 4


class Net:
    """resnet8 of width WIDTH: parameters as a list in normlab's order."""

    def __init__(self, norm, rng):
        self.norm, self.rng = norm, rng
        self.params, self.names, self.running = [], [], []
        self.stem = self.conv(1, WIDTH, 3), self.norm_params(WIDTH)
        self.blocks, channels = [], WIDTH
        for stage in range(3):
            width, stride = WIDTH << stage, 1 if stage == 0 else 2
            block = {"stride": stride}
            block["conv1"], block["norm1"] = self.conv(channels, width, 3), self.norm_params(width)
            block["conv2"], block["norm2"] = self.conv(width, width, 3), self.norm_params(width)
            if stride != 1 or channels != width:  # normlab puts the shortcut after norm2
                block["shortcut"] = self.conv(channels, width, 1), self.norm_params(width)
            self.blocks.append(block)
            channels = width
        self.fc_weight = self.add("linear.weight", self.rng.normal(0, 0.3, (CLASSES, channels)))
        self.fc_bias = self.add("linear.bias", self.rng.normal(0, 0.1, (CLASSES,)))

    def add(self, name, value):
        tensor = torch.tensor(value, dtype=torch.float64, requires_grad=True)
        self.params.append(tensor)
        self.names.append(name)
        return tensor

    def conv(self, cin, cout, k):
        std = np.sqrt(2.0 / (cin * k * k))  # He-normal, as normlab initializes
        return self.add(f"conv{k}x{k}({cin}->{cout}).weight", self.rng.normal(0, std, (cout, cin, k, k)))

    def norm_params(self, channels):
        # gamma and beta away from 1 and 0, so that a dropped term shows; beta
        # first, as normlab lists a norm's parameters by name.
        beta = self.add("beta", self.rng.normal(0, 0.2, channels))
        gamma = self.add("gamma", self.rng.uniform(0.5, 1.5, channels))
        if self.norm == "batch":
            self.running.append([torch.zeros(channels, dtype=torch.float64),
                                 torch.ones(channels, dtype=torch.float64)])
        return gamma, beta, len(self.running) - 1

    def normalize(self, x, params):
        gamma, beta, index = params
        if self.norm == "batch":
            mean, var = self.running[index]
            return F.batch_norm(x, mean, var, gamma, beta, training=True, momentum=BN_MOMENTUM,
                                eps=BN_EPS)
        return F.group_norm(x, min(GN_GROUPS, x.shape[1]), gamma, beta, eps=GN_EPS)

    def forward(self, x):
        h = F.relu(self.normalize(F.conv2d(x, self.stem[0], padding=1), self.stem[1]))
        for b in self.blocks:
            f = F.relu(self.normalize(F.conv2d(h, b["conv1"], stride=b["stride"], padding=1),
                                      b["norm1"]))
            f = self.normalize(F.conv2d(f, b["conv2"], padding=1), b["norm2"])
            s = h
            if "shortcut" in b:
                conv, norm = b["shortcut"]
                s = self.normalize(F.conv2d(h, conv, stride=b["stride"]), norm)
            h = F.relu(f + s)
        return F.linear(h.mean(dim=(2, 3)), self.fc_weight, self.fc_bias)


def make_case(norm):
    rng = np.random.default_rng(zlib.crc32(norm.encode()))
    net = Net(norm, rng)
    # Images with a nonzero mean and a non-unit spread, like standardized pixels.
    x = torch.tensor(rng.normal(0.3, 1.2, (BATCH, 1, 28, 28)), dtype=torch.float64)
    labels = torch.tensor(rng.integers(0, CLASSES, BATCH), dtype=torch.int64)
    logits = net.forward(x)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    grads = [p.grad.detach().clone() for p in net.params]

    folder = os.path.join(HERE, norm)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)

    def save(name, tensor):
        np.save(os.path.join(folder, name + ".npy"), np.asarray(tensor.detach().numpy(), np.float64))

    save("x", x)
    save("labels", labels.double())
    save("logits", logits)
    save("loss", loss)
    for k, (p, g) in enumerate(zip(net.params, grads)):
        save(f"param_{k:02d}", p)
        save(f"grad_{k:02d}", g)
    for k, (mean, var) in enumerate(net.running):
        save(f"running_mean_{k:02d}", mean)
        save(f"running_var_{k:02d}", var)
    return {"norm": {"type": norm}, "model": f"resnet8_w{WIDTH}", "parameters": net.names,
            "norms_with_running_stats": len(net.running), "loss": loss.item()}


def main():
    torch.set_num_threads(1)
    cases = [make_case(norm) for norm in ("batch", "group")]
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump({"generator": "tests/golden/make_resnet_golden.py", "torch": torch.__version__,
                   "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
