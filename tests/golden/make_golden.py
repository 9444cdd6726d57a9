#!/usr/bin/python3
"""Golden test vectors for normlab, computed by PyTorch 1.13 (CPU).

Run by hand, from anywhere, with the system python that has torch (the pyenv
`python3` on PATH has none):

    /usr/bin/python3 tests/golden/make_golden.py

It rewrites tests/golden/<case>/*.npy and tests/golden/cases.json; the build
never runs it. tests/test_golden.cpp checks normlab against the files.

Every case is generated twice, float32 and float64 (suffix _f32 / _f64), from
the same float64 draws (seeded by the case's base name). The inputs are saved
in the case's dtype; the expected outputs are what PyTorch computes from exactly
those inputs in float64, rounded to the dtype. (torch's float32 kernels lose up
to three digits on groups of two values, where dx is a cancellation of order
eps; its own float32 error is recorded per case as torch_float32_error.)

The cases of BFLOAT16_CASES are also generated in bfloat16 (suffix _bf16,
dtype "bfloat16" in cases.json): the float32 case's inputs rounded to bfloat16
(to nearest even), saved as float32 .npy files holding those values (the low
16 bits of each float zero); the expected outputs are the float64 computation
from exactly those values, saved in float64, not rounded. PyTorch's own
bfloat16 computation (the module after .to(torch.bfloat16) on bfloat16
tensors; the references written in torch ops run those ops in bfloat16) is
measured against it per output as torch_bfloat16_error: {output: scaled error}.
tests/test_golden.cpp holds normlab's Norm<bfloat16> to that (see there).

Files of a case (all .npy, normlab's names; cases.json lists which exist):
  inputs   x            input of the measured forward (WeightNorm: v)
           x0 x1 x2     inputs of the train forwards run before it (train_steps of them)
           dy           upstream gradient of the measured forward
           gamma beta g tau v running_mean running_var num_batches_tracked
                        parameters and running state set before the first forward
  outputs  y dx         output and input gradient of the measured forward
           d<param>     parameter gradients (dgamma, dbeta, dg, dtau, dv) of the measured
                        backward
           running_mean_out running_var_out num_batches_tracked_out
                        running state after all forwards (train steps and measured)

Sequence cases ("sequence" in cases.json: the mode of each step) run several
consecutive steps of one module with its state carried: step i reads x_s<i> and
dy_s<i> and writes y_s<i>, dx_s<i>, d<param>_s<i> (that step's gradients alone)
and <state>_out_s<i> (the state after it); tests/test_golden.cpp checks every step.
Cross-Iteration BN's sequences with a layer in front instead read u_s<i> and
weight_s<i> (that layer's input and weight) and write x_s<i> = weight u (the norm's
input); the test gives the norm that layer.

Ghost BatchNorm and Batch Renormalization have no torch module: their references
below are written from the definitions in README.md with torch operations.
Filter Response Normalization with TLU (frn) and EvoNorm-S0 (evonorm_s0) have
none either: their references are written from their formulas (the classes'
docstrings below) with torch operations. In all four, autograd gives dx and the
parameter gradients.
"""

import json
import os
import shutil
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DTYPES = {"float32": (torch.float32, "f32"), "float64": (torch.float64, "f64")}
# Base names of the cases also generated in bfloat16: a few of every type, in
# train, eval and over steps, on the engine's paths (rows, runs, columns, groups).
# Cross-Iteration BN's cases with a layer in front are left out: their x is
# computed by that layer, in float64, so it would not be a bfloat16 input.
BFLOAT16_CASES = {
    "batch_eps_momentum_train", "batch_4d_train", "batch_4d_eval", "batch_momentum_steps_eval",
    "batch_frozen_4d_train", "batch_4d_tall_train",
    "mean_only_batch_4d_train", "mean_only_batch_momentum_steps_eval",
    "sync_batch_4d_train",
    "layer_2d", "layer_3d", "layer_4d", "layer_last_two", "layer_channel_affine_4d",
    "instance_2d_affine", "instance_1d_track_steps_eval",
    "group_g2", "group_gC", "group_1d",
    "weight_2d_dim1", "weight_4d_dim0",
    "rms_3d", "rms_4d_eps_null", "rms_channel_affine_4d",
    "ghost_4d_train", "ghost_momentum_steps_eval",
    "batch_renorm_4d_train", "batch_renorm_3d_clipped_steps_train",
    "batch_renorm_warmup_steps_train",
    "frn_4d_train", "frn_4d_scaled_train", "frn_3d_notlu_train",
    "evonorm_s0_4d_train", "evonorm_s0_2d_train",
    "dyt_4d_train", "dyt_2d_train",
    "switchable_4d_train", "switchable_4d_eval", "switchable_n2_steps",
    "mabn_4d_steps", "mabn_4d_eval",
    "weight_centering_4d_dim0",
    "cross_iteration_batch_uncompensated_steps",
    "none_4d_eval",
}
STEPS = 3  # train forwards before the measured one in the "steps" cases


# --- random data: nonzero means and non-unit spreads so that dropped terms show ---


def per_channel(shape, mean_range, std_range, channel_dim=1):
    """Normal values whose mean and std differ along channel_dim."""
    c = shape[channel_dim] if len(shape) > channel_dim else 1
    view = [1] * len(shape)
    if len(shape) > channel_dim:
        view[channel_dim] = c
    mean = torch.empty(c, dtype=torch.float64).uniform_(*mean_range).reshape(view)
    std = torch.empty(c, dtype=torch.float64).uniform_(*std_range).reshape(view)
    return mean + std * torch.randn(shape, dtype=torch.float64)


def activation(shape, channel_dim=1):
    return per_channel(shape, (-3.0, 3.0), (0.5, 3.0), channel_dim)


def upstream(shape):
    return 0.4 + 1.5 * torch.randn(shape, dtype=torch.float64)


def scale_param(shape):
    return 1.0 + 0.5 * torch.randn(shape, dtype=torch.float64)


def shift_param(shape):
    return torch.randn(shape, dtype=torch.float64)


def running_stats(c):
    return {
        "running_mean": torch.randn(c, dtype=torch.float64),
        "running_var": torch.empty(c, dtype=torch.float64).uniform_(0.5, 2.0),
    }


# --- reference modules; torch names -> normlab names ---


class RmsChannelAffine(nn.Module):
    """RMSNorm with channel_affine: per sample over (C, S...), gamma per channel."""

    def __init__(self, c, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c, dtype=torch.float64))

    def forward(self, x):
        dims = tuple(range(1, x.dim()))
        view = [1, x.shape[1]] + [1] * (x.dim() - 2)
        return x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + self.eps) * self.weight.view(view)


class RMSNorm(nn.Module):
    """torch 2.4 nn.RMSNorm semantics (torch 1.13 has none):
    y = x / sqrt(mean(x^2 over the normalized dims) + eps) * gamma,
    eps None = torch.finfo(dtype of the data).eps."""

    def __init__(self, normalized_shape, eps, affine):
        super().__init__()
        self.normalized_shape = tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if affine else None

    def forward(self, x):
        dims = tuple(range(-len(self.normalized_shape), 0))
        y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + self.eps)
        return y * self.weight if self.weight is not None else y


class GhostBatchNorm(nn.Module):
    """Ghost BN as normlab defines it: F.batch_norm with batch statistics on each
    run of V consecutive samples; one running-statistics update per forward with
    the average of the virtual batches' means and unbiased variances (Keras)."""

    def __init__(self, c, virtual_batch_size, eps, momentum, affine, track):
        super().__init__()
        self.v, self.eps, self.momentum, self.forwards = virtual_batch_size, eps, momentum, 0
        self.weight = nn.Parameter(torch.ones(c)) if affine else None
        self.bias = nn.Parameter(torch.zeros(c)) if affine else None
        self.register_buffer("running_mean", torch.zeros(c) if track else None)
        self.register_buffer("running_var", torch.ones(c) if track else None)

    def forward(self, x):
        if not self.training and self.running_mean is not None:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        chunks = x.split(self.v)
        y = torch.cat([F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps)
                       for c in chunks])
        if self.training and self.running_mean is not None:
            dims = [0] + list(range(2, x.dim()))
            with torch.no_grad():
                mean = torch.stack([c.mean(dims) for c in chunks]).mean(0)
                var = torch.stack([c.var(dims, unbiased=True) for c in chunks]).mean(0)
                self.forwards += 1
                m = self.momentum if self.momentum is not None else 1.0 / self.forwards
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var)
        return y


class MeanOnlyBatchNorm(nn.Module):
    """Mean-only BatchNorm (Salimans & Kingma 2016) as normlab defines it:
    y = (x - mu_B) * gamma + beta per channel, mu_B over (N, H, W), no division;
    running statistics as BatchNorm's (mean, and the unbiased variance, which eval
    does not use); eval subtracts the running mean."""

    def __init__(self, c, momentum, affine, track):
        super().__init__()
        self.momentum, self.forwards = momentum, 0
        self.weight = nn.Parameter(torch.ones(c)) if affine else None
        self.bias = nn.Parameter(torch.zeros(c)) if affine else None
        self.register_buffer("running_mean", torch.zeros(c) if track else None)
        self.register_buffer("running_var", torch.ones(c) if track else None)

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        if not self.training and self.running_mean is not None:
            mean = self.running_mean
        else:
            mean = x.mean(dims)
            if self.training and self.running_mean is not None:
                with torch.no_grad():
                    self.forwards += 1
                    m = self.momentum if self.momentum is not None else 1.0 / self.forwards
                    self.running_mean.mul_(1 - m).add_(m * mean)
                    self.running_var.mul_(1 - m).add_(m * x.var(dims, unbiased=True))
        y = x - mean.view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class BatchRenorm(nn.Module):
    """Batch Renormalization (Ioffe 2017) as normlab defines it: in training
    xhat = (x - mu_B) / sigma_B * r + d, r = clip(sigma_B / sigma, 1/rmax_t, rmax_t),
    d = clip((mu_B - mu) / sigma, -dmax_t, dmax_t), sigma = sqrt(running_var + eps),
    r and d detached; rmax_t = 1 + (rmax - 1) f, dmax_t = dmax f with
    f = min(1, t / warmup_steps) (1 without warm-up), t = num_batches_tracked before
    the forward. Running statistics as BatchNorm's; eval normalizes with them."""

    EXTRA_STATE = ("num_batches_tracked",)

    def __init__(self, c, eps, momentum, affine, rmax, dmax, warmup_steps):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.rmax, self.dmax, self.warmup = rmax, dmax, warmup_steps
        self.weight = nn.Parameter(torch.ones(c)) if affine else None
        self.bias = nn.Parameter(torch.zeros(c)) if affine else None
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.zeros(1))

    def forward(self, x):
        view = [1, -1] + [1] * (x.dim() - 2)
        sigma = torch.sqrt(self.running_var + self.eps)
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            mu = x.mean(dims)
            sigma_b = torch.sqrt(x.var(dims, unbiased=False) + self.eps)
            t = self.num_batches_tracked.item()
            f = min(1.0, t / self.warmup) if self.warmup > 0 else 1.0
            rmax, dmax = 1 + (self.rmax - 1) * f, self.dmax * f
            r = (sigma_b.detach() / sigma).clamp(1 / rmax, rmax)
            d = ((mu.detach() - self.running_mean) / sigma).clamp(-dmax, dmax)
            xhat = (x - mu.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
            with torch.no_grad():
                var = x.var(dims, unbiased=True)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mu)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
                self.num_batches_tracked += 1
        else:
            xhat = (x - self.running_mean.view(view)) / sigma.view(view)
        if self.weight is None:
            return xhat
        return xhat * self.weight.view(view) + self.bias.view(view)


class FilterResponseNorm(nn.Module):
    """Filter Response Normalization with TLU (Singh & Krishnan 2020): per sample
    and channel nu2 = mean of x^2 over the spatial dims,
    y = gamma * x / sqrt(nu2 + eps) + beta, then (tlu) max(y, tau) with a learned
    per-channel tau. No running state: train and eval are the same."""

    def __init__(self, c, eps, tlu):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.tau = nn.Parameter(torch.zeros(c)) if tlu else None

    def pre_tlu(self, x):
        assert x.dim() >= 3, "frn needs at least one spatial dim"
        view = [1, -1] + [1] * (x.dim() - 2)
        nu2 = x.pow(2).mean(tuple(range(2, x.dim())), keepdim=True)
        return self.weight.view(view) * x / torch.sqrt(nu2 + self.eps) + self.bias.view(view)

    def forward(self, x):
        y = self.pre_tlu(x)
        if self.tau is None:
            return y
        tau = self.tau.view([1, -1] + [1] * (x.dim() - 2)).expand_as(y)
        # torch.maximum splits the gradient in half on a tie; keep every element
        # well clear of tau, also after rounding to float32. (PyTorch's own
        # bfloat16 computation is what it is, ties included.)
        if y.dtype != torch.bfloat16:
            gap = (y - tau).abs().min().item()
            assert gap > TLU_MARGIN * y.abs().max().item(), ("y ties tau", gap)
        return torch.maximum(y, tau)


class EvoNormS0(nn.Module):
    """EvoNorm-S0 (Liu et al. 2020): y = x * sigmoid(v * x) / sqrt(groupvar(x) + eps)
    * gamma + beta, groupvar the biased variance over each sample's group of C/G
    adjacent channels and all spatial positions (GroupNorm's groups); the numerator
    is x itself, not centered. No running state: train and eval are the same."""

    def __init__(self, c, groups, eps):
        super().__init__()
        assert c % groups == 0, (c, groups)
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.v = nn.Parameter(torch.ones(c))

    def forward(self, x):
        view = [1, -1] + [1] * (x.dim() - 2)
        grouped = x.reshape(x.shape[0], self.groups, -1)  # channel-major: adjacent channels
        var = grouped.var(-1, unbiased=False, keepdim=True)
        std = torch.sqrt(var + self.eps).expand_as(grouped).reshape(x.shape)
        y = x * torch.sigmoid(self.v.view(view) * x) / std
        return y * self.weight.view(view) + self.bias.view(view)


class FrozenBatchNorm(nn.Module):
    """BatchNorm with "frozen": true (detectron2's FrozenBatchNorm2d with a trainable
    affine): F.batch_norm with the running statistics in train mode too, which stay
    as they are; gamma and beta get their gradients."""

    def __init__(self, c, eps, affine):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c)) if affine else None
        self.bias = nn.Parameter(torch.zeros(c)) if affine else None
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


class DynamicTanh(nn.Module):
    """Dynamic Tanh (Zhu et al. 2025): y = gamma[c] * tanh(alpha * x) + beta[c], alpha
    one learned scalar, gamma and beta per channel (dim 1). No statistics."""

    def __init__(self, c, alpha_init):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), alpha_init))
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        view = [1, -1] + [1] * (x.dim() - 2)
        return self.weight.view(view) * torch.tanh(self.alpha * x) + self.bias.view(view)


class SwitchableNorm(nn.Module):
    """Switchable Normalization (Luo et al. 2019), the paper's equations: per (n, c)
    the mean and the variance are softmax mixtures, in the order (instance, layer,
    batch), of the instance statistics over the spatial dims, the layer statistics
    over (C, spatial) and the batch statistics over (N, spatial), every variance
    biased; y = gamma (x - mean) / sqrt(var + eps) + beta. Eval replaces the batch
    statistics by running ones (BatchNorm's update: unbiased variance, momentum)."""

    EXTRA_STATE = ()

    def __init__(self, c, eps, momentum):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.mean_weight = nn.Parameter(torch.ones(3))
        self.var_weight = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x):
        n, c = x.shape[:2]
        xs = x.reshape(n, c, -1)
        mean_in, var_in = xs.mean(-1), xs.var(-1, unbiased=False)
        mean_ln = xs.reshape(n, -1).mean(-1, keepdim=True)
        var_ln = xs.reshape(n, -1).var(-1, unbiased=False, keepdim=True)
        if self.training:
            per_channel = xs.transpose(0, 1).reshape(c, -1)
            mean_bn, var_bn = per_channel.mean(-1), per_channel.var(-1, unbiased=False)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean_bn)
                self.running_var.mul_(1 - m).add_(m * per_channel.var(-1, unbiased=True))
        else:
            mean_bn, var_bn = self.running_mean, self.running_var
        mw = torch.softmax(self.mean_weight, 0)
        vw = torch.softmax(self.var_weight, 0)
        mean = mw[0] * mean_in + mw[1] * mean_ln + mw[2] * mean_bn[None, :]
        var = vw[0] * var_in + vw[1] * var_ln + vw[2] * var_bn[None, :]
        y = ((xs - mean[..., None]) / torch.sqrt(var[..., None] + self.eps)).reshape(x.shape)
        view = [1, -1] + [1] * (x.dim() - 2)
        return y * self.weight.view(view) + self.bias.view(view)


class MabnFunction(torch.autograd.Function):
    """One training step of MABN (Yan et al. 2020, Algorithm 1, with the authors'
    renormalization r): the forward and its backward as the algorithm states them
    (the backward is not the gradient of the forward: it averages the backward's
    statistic over iterations), so it is written out, line by line."""

    @staticmethod
    def forward(ctx, x, weight, bias, module):
        m = module
        t = int(m.num_batches_tracked.item()) + 1  # this step, counted from 1
        m.num_batches_tracked += 1
        dims = [0] + list(range(2, x.dim()))
        view = [1, -1] + [1] * (x.dim() - 2)
        chi = (x * x).mean(dims)  # the reduced normalization: a mean square, no centering
        m.forward_buffer[t % m.buffer_size] = chi
        averaged = t > m.buffer_size and t >= m.warmup_steps
        var = m.forward_buffer.mean(0) if averaged else chi
        r = torch.sqrt(var + m.eps) / torch.sqrt(m.running_var + m.eps)
        r = r.clamp(1 / m.rmax, m.rmax) if t > max(m.renorm_start, m.warmup_steps) else r * 0 + 1
        m.running_var.mul_(1 - m.momentum).add_(m.momentum * var)
        z = x / torch.sqrt(var + m.eps).view(view)
        ctx.module, ctx.t, ctx.averaged, ctx.view, ctx.dims = m, t, averaged, view, dims
        ctx.save_for_backward(z, var, weight, r)
        return weight.view(view) * r.view(view) * z + bias.view(view)

    @staticmethod
    def backward(ctx, dy):
        z, var, weight, r = ctx.saved_tensors
        m, view, dims = ctx.module, ctx.view, ctx.dims
        g = dy * (weight * r).view(view)
        psi = (g * z).mean(dims)
        m.backward_buffer[ctx.t % m.buffer_size] = psi
        psi_bar = m.backward_buffer.mean(0) if ctx.averaged else psi
        dx = (g - z * psi_bar.view(view)) / torch.sqrt(var + m.eps).view(view)
        return dx, (dy * r.view(view) * z).sum(dims), dy.sum(dims), None


class Mabn(nn.Module):
    """Moving Average Batch Normalization (Yan et al., ICLR 2020): x / sqrt(SMA of the
    batch mean squares over the last buffer_size steps + eps), renormalized by r
    towards the running variance, in the backward the SMA of mean(dxhat * xhat); the
    first steps (t <= buffer_size or t < warmup_steps) use the current batch's.
    Eval: gamma x / sqrt(running_var + eps) + beta."""

    EXTRA_STATE = ("forward_buffer", "backward_buffer", "num_batches_tracked")

    def __init__(self, c, eps, momentum, buffer_size, warmup_steps, rmax, renorm_start):
        super().__init__()
        self.eps, self.momentum, self.buffer_size = eps, momentum, buffer_size
        self.warmup_steps, self.rmax, self.renorm_start = warmup_steps, rmax, renorm_start
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", None)
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("forward_buffer", torch.zeros(buffer_size, c))
        self.register_buffer("backward_buffer", torch.zeros(buffer_size, c))
        self.register_buffer("num_batches_tracked", torch.zeros(1))

    def forward(self, x):
        if self.training:
            return MabnFunction.apply(x, self.weight, self.bias, self)
        view = [1, -1] + [1] * (x.dim() - 2)
        return (self.weight.view(view) * x / torch.sqrt(self.running_var + self.eps).view(view)
                + self.bias.view(view))


class CrossIterationBN(nn.Module):
    """Cross-Iteration BatchNorm (Yao et al., CVPR 2021), per channel over (N, spatial).
    Given the weight w of the layer in front (x = w u), each train step keeps
    mu = mean(x), nu = mean(x^2) and their gradients in w (autograd, as the authors'
    code takes them); an earlier step's are moved to the current w to first order,
    mu + <dmu/dw, w - w_then> per row; one whose nu - mu^2 is negative is left out; the
    current step and up to window - 1 earlier ones are averaged: mean = avg mu,
    var = avg nu - mean^2; y = gamma (x - mean) / sqrt(var + eps) + beta. Gradients
    flow through the current mu and nu only. Without w, no compensation. The first
    burn_in steps are BatchNorm and record nothing. Running statistics: BatchNorm's,
    of each batch's own statistics; eval uses them."""

    EXTRA_STATE = ("num_batches_tracked",)

    def __init__(self, c, eps, momentum, window, burn_in):
        super().__init__()
        self.eps, self.momentum, self.window, self.burn_in = eps, momentum, window, burn_in
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.zeros(1))
        self.history = []  # (mu, nu, dmu/dw, dnu/dw, w) of earlier steps, newest first
        self.dropped = 0  # earlier steps left out, over the module's life

    def forward(self, x, w=None):
        dims = [0] + list(range(2, x.dim()))
        view = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            self.num_batches_tracked += 1
            mu, nu = x.mean(dims), (x * x).mean(dims)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mu)
                self.running_var.mul_(1 - m).add_(m * x.var(dims, unbiased=True))
            if self.num_batches_tracked.item() <= self.burn_in:
                mean, var = mu, x.var(dims, unbiased=False)
            else:
                mean, var = self.pool(mu, nu, w)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps)
        return y * self.weight.view(view) + self.bias.view(view)

    def pool(self, mu, nu, w):
        if w is not None:
            dmu = torch.autograd.grad(mu.sum(), w, retain_graph=True)[0]
            dnu = torch.autograd.grad(nu.sum(), w, retain_graph=True)[0]
        mus, nus, kept = [mu], [nu], [torch.ones_like(mu)]
        for mu0, nu0, dmu0, dnu0, w0 in self.history:
            if w is not None:
                delta = (w.detach() - w0).reshape(w0.shape[0], -1)
                mu0 = mu0 + (dmu0.reshape(delta.shape) * delta).sum(1)
                nu0 = nu0 + (dnu0.reshape(delta.shape) * delta).sum(1)
            ok = (nu0 - mu0 * mu0 >= 0).to(mu.dtype)
            self.dropped += int((ok == 0).sum())
            mus.append(mu0 * ok)
            nus.append(nu0 * ok)
            kept.append(ok)
        n = torch.stack(kept).sum(0)
        mean = torch.stack(mus).sum(0) / n
        var = torch.stack(nus).sum(0) / n - mean * mean
        entry = (mu.detach(), nu.detach(), None if w is None else dmu.detach(),
                 None if w is None else dnu.detach(), None if w is None else w.detach().clone())
        self.history = ([entry] + self.history)[:self.window - 1]
        return mean, var


def preceding_output(u, w):
    """The bias-free layer in front of a cross_iteration_batch case: x = w u per
    position, u (N, K, S...), w (C, K): a linear layer, or a 1x1 convolution."""
    return torch.einsum("ck,nk...->nc...", w, u)


TLU_MARGIN = 1e-5  # least |y - tau| before the TLU, relative to max |y|

PARAM_NAMES = {"weight": "gamma", "bias": "beta", "tau": "tau", "v": "v", "alpha": "alpha",
               "mean_weight": "mean_weight", "var_weight": "var_weight"}


def state_names(module):
    """normlab's running state of a module: running_mean and running_var where
    present (not torch's num_batches_tracked), plus the module's EXTRA_STATE."""
    names = [n for n in ("running_mean", "running_var") if getattr(module, n, None) is not None]
    return names + list(getattr(module, "EXTRA_STATE", ()))


def torch_module(spec, shape, data_dtype):
    """The torch module whose semantics the normlab spec claims."""
    kind = spec["type"]
    c = shape[1] if len(shape) > 1 else None
    eps = spec.get("eps", 1e-5)
    if kind == "none":  # no normalization: y = x, dx = dy
        return nn.Identity()
    if kind == "batch" and spec.get("frozen", False):
        return FrozenBatchNorm(c, eps, spec.get("affine", True))
    if kind in ("batch", "sync_batch"):  # SyncBatchNorm on one process is BatchNorm
        cls = nn.BatchNorm1d if len(shape) <= 3 else nn.BatchNorm2d
        return cls(c, eps=eps, momentum=spec.get("momentum", 0.1),
                   affine=spec.get("affine", True),
                   track_running_stats=spec.get("track_running_stats", True))
    if kind == "mean_only_batch":
        return MeanOnlyBatchNorm(c, spec.get("momentum", 0.1), spec.get("affine", True),
                                 spec.get("track_running_stats", True))
    if kind == "instance":
        cls = nn.InstanceNorm1d if len(shape) == 3 else nn.InstanceNorm2d
        return cls(c, eps=eps, momentum=spec.get("momentum", 0.1),
                   affine=spec.get("affine", False),
                   track_running_stats=spec.get("track_running_stats", False))
    if kind == "group":
        return nn.GroupNorm(spec.get("groups", 4), c, eps=eps, affine=spec.get("affine", True))
    if kind == "layer":
        if spec.get("channel_affine", False):
            # One group over all but dim 0, with per-channel gamma/beta.
            return nn.GroupNorm(1, c, eps=eps, affine=spec.get("affine", True))
        ns = spec.get("normalized_shape") or shape[1:]
        return nn.LayerNorm(ns, eps=eps, elementwise_affine=spec.get("affine", True))
    if kind == "rms":
        ns = spec.get("normalized_shape") or shape[1:]
        eps = spec.get("eps")
        if eps is None:  # the data's machine epsilon, even when computed in float64
            eps = torch.finfo(data_dtype).eps
        if spec.get("channel_affine", False):
            return RmsChannelAffine(c, eps)
        return RMSNorm(ns, eps, spec.get("affine", True))
    if kind == "ghost":
        return GhostBatchNorm(c, spec.get("virtual_batch_size", 4), eps,
                              spec.get("momentum", 0.1), spec.get("affine", True),
                              spec.get("track_running_stats", True))
    if kind == "batch_renorm":
        return BatchRenorm(c, eps, spec.get("momentum", 0.1), spec.get("affine", True),
                           spec.get("rmax", 3.0), spec.get("dmax", 5.0),
                           spec.get("warmup_steps", 1000))
    if kind == "frn":
        return FilterResponseNorm(c, spec.get("eps", 1e-6), spec.get("tlu", True))
    if kind == "evonorm_s0":
        return EvoNormS0(c, spec.get("groups", 32), eps)
    if kind == "dyt":
        return DynamicTanh(c, spec.get("alpha_init", 0.5))
    if kind == "switchable":
        return SwitchableNorm(c, eps, spec.get("momentum", 0.1))
    if kind == "cross_iteration_batch":
        return CrossIterationBN(c, eps, spec.get("momentum", 0.1), spec.get("window", 8),
                                spec.get("burn_in", 0))
    if kind == "mabn":
        return Mabn(c, eps, spec.get("momentum", 0.02), spec.get("buffer_size", 16),
                    spec.get("warmup_steps", 100), spec.get("rmax", 5.0),
                    spec.get("renorm_start", 1000))
    raise ValueError(kind)


def draw_tau(module, arrays):
    """FRN's tau, per channel at (0.3 randn - 0.3) standard deviations of that
    channel's pre-TLU output from its mean (relative to the scale of y, which the
    mean-50 case narrows), so that a good fraction of the outputs, 20-50% in each
    case, is clipped by the TLU."""
    with torch.no_grad():
        module.weight.copy_(arrays["gamma"])
        module.bias.copy_(arrays["beta"])
        y = module.pre_tlu(arrays["x"]).transpose(0, 1).reshape(module.weight.shape[0], -1)
    tau = y.mean(1) + y.std(1) * (0.3 * torch.randn(y.shape[0], dtype=torch.float64) - 0.3)
    clipped = (y < tau[:, None]).double().mean().item()
    assert 0.2 <= clipped <= 0.5, ("fraction clipped by the TLU", clipped)
    return tau


def draw_module_inputs(spec, shape, steps, x_mean=0.0):
    """x, dy, the train-step inputs, random parameters and running state.
    x_mean (if nonzero) is added to every activation drawn."""
    draw_x = (lambda: activation(shape) + x_mean) if x_mean else (lambda: activation(shape))
    arrays = {f"x{i}": draw_x() for i in range(steps)}
    arrays["x"] = draw_x()
    arrays["dy"] = upstream(shape)
    module = torch_module(spec, shape, torch.float64)
    for tname, p in module.named_parameters():
        name = PARAM_NAMES[tname]
        if name == "tau":  # placed against the output, once gamma and beta are drawn
            continue
        scaled = name in ("gamma", "v", "alpha")
        arrays[name] = scale_param(p.shape) if scaled else shift_param(p.shape)
    if getattr(module, "tau", None) is not None:
        arrays["tau"] = draw_tau(module, arrays)
    if getattr(module, "running_var", None) is not None:
        drawn = running_stats(shape[1])
        arrays.update({k: v for k, v in drawn.items() if k in state_names(module)})
    for name in ("forward_buffer", "backward_buffer", "num_batches_tracked"):
        if name in state_names(module):
            arrays[name] = torch.zeros(getattr(module, name).shape, dtype=torch.float64)
    return arrays


def compute_module(spec, shape, mode, steps, inputs, data_dtype):
    """Runs the norm module in the dtype of `inputs`: `steps` train forwards,
    then the measured forward in `mode` and its backward. Returns the outputs."""
    dtype = inputs["x"].dtype
    module = torch_module(spec, shape, data_dtype).to(dtype)
    with torch.no_grad():
        for tname, p in module.named_parameters():
            p.copy_(inputs[PARAM_NAMES[tname]])
        for name in state_names(module):
            getattr(module, name).copy_(inputs[name])
    module.train()
    with torch.no_grad():
        for i in range(steps):
            module(inputs[f"x{i}"])
    module.train(mode == "train")
    x = inputs["x"].clone().requires_grad_()
    y = module(x)
    y.backward(inputs["dy"])

    out = {"y": y.detach(), "dx": x.grad}
    for tname, p in module.named_parameters():
        out["d" + PARAM_NAMES[tname]] = p.grad
    for name in state_names(module):
        out[name + "_out"] = getattr(module, name).detach().clone()
    return out


def draw_sequence_inputs(spec, shape, modes, preceding=None):
    """The inputs of a sequence case: parameters and state as draw_module_inputs
    draws them, and x_s<i>, dy_s<i> for each step. With `preceding` = (K, drift),
    x_s<i> is computed instead, by preceding_output from u_s<i> (N, K, S...) and the
    layer's weight_s<i> (C, K), which moves by `drift` (relative) each step."""
    arrays = draw_module_inputs(spec, shape, 0)
    del arrays["x"], arrays["dy"]
    if preceding:
        k, drift = preceding
        weight = torch.randn(shape[1], k, dtype=torch.float64) / k ** 0.5
    for i in range(len(modes)):
        if preceding:
            arrays[f"u_s{i}"] = activation((shape[0], k) + tuple(shape[2:]))
            arrays[f"weight_s{i}"] = weight
            weight = weight + drift * torch.randn(weight.shape, dtype=torch.float64) / k ** 0.5
        else:
            arrays[f"x_s{i}"] = activation(shape)
        arrays[f"dy_s{i}"] = upstream(shape)
    return arrays


def compute_sequence(spec, shape, modes, inputs, data_dtype):
    """Consecutive steps of one module, state carried: in step i a forward in
    modes[i] on x_s<i> and its backward with dy_s<i>. Each step's outputs, parameter
    gradients (of that step alone) and state after it get the suffix _s<i>."""
    dtype = inputs["dy_s0"].dtype
    module = torch_module(spec, shape, data_dtype).to(dtype)
    with torch.no_grad():
        for tname, p in module.named_parameters():
            p.copy_(inputs[PARAM_NAMES[tname]])
        for name in state_names(module):
            getattr(module, name).copy_(inputs[name])
    out = {}
    for i, mode in enumerate(modes):
        module.train(mode == "train")
        module.zero_grad(set_to_none=False)
        for p in module.parameters():
            if p.grad is not None:
                p.grad.zero_()
        if f"weight_s{i}" in inputs:  # x comes from the layer in front, which the norm reads
            w = inputs[f"weight_s{i}"].clone().requires_grad_()
            x = preceding_output(inputs[f"u_s{i}"], w)
            y = module(x, w)
            out[f"x_s{i}"] = x.detach()
            # dx by autograd.grad: a retain_grad hook on x would also collect the
            # module's own autograd.grad calls through x (its dmu/dw, dnu/dw).
            params = list(module.parameters())
            dx, *dparams = torch.autograd.grad(y, [x] + params, inputs[f"dy_s{i}"])
            for p, dp in zip(params, dparams):
                p.grad = dp
        else:
            x = inputs[f"x_s{i}"].clone().requires_grad_()
            y = module(x)
            y.backward(inputs[f"dy_s{i}"])
            dx = x.grad
        out[f"y_s{i}"], out[f"dx_s{i}"] = y.detach(), dx
        for tname, p in module.named_parameters():
            out[f"d{PARAM_NAMES[tname]}_s{i}"] = p.grad.clone()
        for name in state_names(module):
            out[f"{name}_out_s{i}"] = getattr(module, name).detach().clone()
    out["dropped"] = getattr(module, "dropped", 0)
    return out


def draw_weight_inputs(spec, shape, given_g):
    """v (as x), dy and, unless g is left to weight_norm's initialization, g."""
    dim = spec["dim"]
    arrays = {"x": per_channel(shape, (-1.0, 1.0), (0.3, 2.0), channel_dim=dim),
              "dy": upstream(shape)}
    if given_g:
        arrays["g"] = scale_param((shape[dim],))
    return arrays


def compute_weight(spec, shape, inputs):
    """torch.nn.utils.weight_norm on a Linear / Conv2d weight v of this shape:
    w = g * v / ||v||, the norm over all dims but `dim`. Without a given g, g
    keeps weight_norm's initialization ||v|| (so w == v)."""
    dtype = inputs["x"].dtype
    dim = spec["dim"]
    if len(shape) == 2:
        module = nn.Linear(shape[1], shape[0], bias=False)
    else:
        module = nn.Conv2d(shape[1], shape[0], shape[2:], bias=False)
    module = module.to(dtype)
    with torch.no_grad():
        module.weight.copy_(inputs["x"])
    nn.utils.weight_norm(module, name="weight", dim=dim)  # g = ||v|| here
    if "g" in inputs:
        with torch.no_grad():
            module.weight_g.copy_(inputs["g"].reshape(module.weight_g.shape))
    for hook in module._forward_pre_hooks.values():  # recomputes module.weight
        hook(module, None)
    module.weight.backward(inputs["dy"])
    return {"y": module.weight.detach(), "dx": module.weight_v.grad,
            "dg": module.weight_g.grad.reshape(-1)}


def compute_weight_centering(spec, inputs):
    """Weight centralization (Yan et al. 2020, with MABN): w = v - mean(v), the mean
    over all dims but `dim`; autograd gives dv."""
    v = inputs["x"].clone().requires_grad_()
    dims = tuple(d for d in range(v.dim()) if d != spec["dim"] % v.dim())
    w = v - v.mean(dims, keepdim=True)
    w.backward(inputs["dy"])
    return {"y": w.detach(), "dx": v.grad}


def scaled_error(got, want):
    """max |got - want| / (|want| + max|want|), as tests/test_golden.cpp measures."""
    got, want = got.double(), want.double()
    scale = max(want.abs().max().item(), 1e-30)
    return ((got - want).abs() / (want.abs() + scale)).max().item()


# --- the cases: (base name, normlab spec, input shape, mode, train steps[, draw options]) ---


def cases():
    c = []
    add = lambda *args: c.append(args)

    for mode in ("train", "eval"):
        add(f"batch_2d_{mode}", {"type": "batch"}, (2, 3), mode, 0)
        add(f"batch_3d_n1_{mode}", {"type": "batch"}, (1, 5, 7), mode, 0)
        add(f"batch_4d_{mode}", {"type": "batch"}, (2, 3, 5, 5), mode, 0)
        add(f"batch_odd_{mode}", {"type": "batch"}, (3, 6, 3, 5), mode, 0)
        add(f"batch_noaffine_{mode}", {"type": "batch", "affine": False}, (2, 3, 5, 5), mode, 0)
        add(f"batch_notrack_{mode}", {"type": "batch", "track_running_stats": False},
            (2, 3, 5, 5), mode, 0)
    for mode in ("train", "eval"):
        add(f"mean_only_batch_2d_{mode}", {"type": "mean_only_batch"}, (4, 3), mode, 0)
        add(f"mean_only_batch_4d_{mode}", {"type": "mean_only_batch"}, (2, 3, 5, 5), mode, 0)
        add(f"mean_only_batch_noaffine_{mode}", {"type": "mean_only_batch", "affine": False},
            (3, 4, 6), mode, 0)
    add("mean_only_batch_momentum_steps_eval", {"type": "mean_only_batch", "momentum": 0.2},
        (3, 6, 3, 5), "eval", STEPS)
    add("batch_eps_momentum_train", {"type": "batch", "eps": 1e-3, "momentum": 0.3}, (4, 3),
        "train", 0)
    add("batch_cumulative_train", {"type": "batch", "momentum": None}, (2, 3, 5, 5), "train", 0)
    add("batch_momentum_steps_eval", {"type": "batch", "momentum": 0.1}, (3, 6, 3, 5), "eval",
        STEPS)
    add("batch_cumulative_steps_eval", {"type": "batch", "momentum": None}, (2, 3, 5, 5), "eval",
        STEPS)
    add("batch_cumulative_steps_train", {"type": "batch", "momentum": None}, (2, 3, 4), "train",
        STEPS)

    # One process: torch.nn.SyncBatchNorm refuses CPU tensors; on one rank it is
    # BatchNorm, which is what these check (tests/mpi checks several ranks).
    for mode in ("train", "eval"):
        add(f"sync_batch_4d_{mode}", {"type": "sync_batch"}, (2, 3, 5, 5), mode, 0)
    add("sync_batch_2d_train", {"type": "sync_batch"}, (4, 3), "train", 0)
    add("sync_batch_steps_eval", {"type": "sync_batch", "momentum": None}, (3, 6, 3, 5), "eval",
        STEPS)

    add("layer_2d", {"type": "layer"}, (3, 5), "train", 0)
    add("layer_3d", {"type": "layer"}, (2, 3, 7), "train", 0)
    add("layer_4d", {"type": "layer"}, (2, 3, 4, 5), "train", 0)
    add("layer_4d_eval", {"type": "layer"}, (2, 3, 4, 5), "eval", 0)
    add("layer_last_dim", {"type": "layer", "normalized_shape": [7]}, (2, 3, 7), "train", 0)
    add("layer_last_two", {"type": "layer", "normalized_shape": [4, 5]}, (2, 3, 4, 5), "train", 0)
    add("layer_noaffine", {"type": "layer", "affine": False}, (2, 3, 4, 5), "train", 0)
    add("layer_eps", {"type": "layer", "eps": 1e-3}, (2, 3, 7), "train", 0)
    add("layer_channel_affine_3d", {"type": "layer", "channel_affine": True}, (2, 4, 7),
        "train", 0)
    add("layer_channel_affine_4d", {"type": "layer", "channel_affine": True}, (2, 3, 4, 5),
        "train", 0)

    for shape, tag in (((2, 3, 7), "1d"), ((1, 4, 5, 5), "2d")):
        add(f"instance_{tag}", {"type": "instance"}, shape, "train", 0)
        add(f"instance_{tag}_eval", {"type": "instance"}, shape, "eval", 0)
        add(f"instance_{tag}_affine", {"type": "instance", "affine": True}, shape, "train", 0)
        for mode in ("train", "eval"):
            add(f"instance_{tag}_track_{mode}",
                {"type": "instance", "affine": True, "track_running_stats": True}, shape, mode, 0)
    add("instance_1d_track_steps_eval",
        {"type": "instance", "affine": True, "track_running_stats": True, "momentum": 0.2},
        (2, 3, 7), "eval", STEPS)

    add("group_g1", {"type": "group", "groups": 1}, (2, 6, 5, 5), "train", 0)
    add("group_g2", {"type": "group", "groups": 2}, (2, 6, 5, 5), "train", 0)
    add("group_gC", {"type": "group", "groups": 6}, (2, 6, 5, 5), "train", 0)
    add("group_g3_eval", {"type": "group", "groups": 3}, (2, 6, 5, 5), "eval", 0)
    add("group_1d", {"type": "group", "groups": 2}, (1, 4, 7), "train", 0)
    add("group_2d", {"type": "group", "groups": 3}, (2, 6), "train", 0)
    add("group_noaffine", {"type": "group", "groups": 4, "affine": False}, (1, 4, 7), "train", 0)
    add("group_default_groups", {"type": "group"}, (3, 8, 3), "train", 0)

    add("weight_2d_dim0", {"type": "weight", "dim": 0}, (4, 3), "train", 0)
    add("weight_2d_dim1", {"type": "weight", "dim": 1}, (4, 3), "train", 0)
    add("weight_4d_dim0", {"type": "weight", "dim": 0}, (5, 3, 3, 3), "train", 0)
    add("weight_4d_dim1", {"type": "weight", "dim": 1}, (5, 3, 3, 3), "eval", 0)
    add("weight_4d_dim0_init_g", {"type": "weight", "dim": 0}, (5, 3, 3, 3), "train", 0)

    add("rms_2d", {"type": "rms", "eps": 1e-6}, (3, 5), "train", 0)
    add("rms_2d_eps_null", {"type": "rms", "eps": None}, (3, 5), "train", 0)
    add("rms_3d", {"type": "rms", "eps": 1e-6}, (2, 3, 7), "train", 0)
    add("rms_4d_eps_null", {"type": "rms", "eps": None}, (2, 3, 4, 5), "train", 0)
    add("rms_last_dim", {"type": "rms", "eps": 1e-6, "normalized_shape": [7]}, (2, 3, 7),
        "train", 0)
    add("rms_last_dim_eps_null", {"type": "rms", "normalized_shape": [7]}, (2, 3, 7), "train", 0)
    add("rms_noaffine", {"type": "rms", "eps": 1e-6, "affine": False}, (2, 3, 7), "train", 0)
    add("rms_channel_affine_4d", {"type": "rms", "eps": 1e-6, "channel_affine": True},
        (2, 3, 4, 5), "train", 0)

    add("ghost_2d_train", {"type": "ghost", "virtual_batch_size": 4}, (8, 3), "train", 0)
    add("ghost_2d_v2_train", {"type": "ghost", "virtual_batch_size": 2}, (6, 5), "train", 0)
    add("ghost_3d_v3_train", {"type": "ghost", "virtual_batch_size": 3}, (6, 3, 4), "train", 0)
    add("ghost_4d_train", {"type": "ghost", "virtual_batch_size": 2}, (4, 3, 3, 3), "train", 0)
    add("ghost_one_virtual_batch_train", {"type": "ghost", "virtual_batch_size": 4}, (4, 3, 5),
        "train", 0)
    add("ghost_v1_4d_train", {"type": "ghost", "virtual_batch_size": 1}, (3, 2, 3, 3), "train", 0)
    add("ghost_noaffine_train", {"type": "ghost", "virtual_batch_size": 2, "affine": False},
        (4, 3, 5), "train", 0)
    add("ghost_eps_momentum_train",
        {"type": "ghost", "virtual_batch_size": 2, "eps": 1e-3, "momentum": 0.3}, (6, 4), "train", 0)
    add("ghost_cumulative_steps_train", {"type": "ghost", "virtual_batch_size": 2, "momentum": None},
        (4, 3, 5), "train", STEPS)
    add("ghost_momentum_steps_eval", {"type": "ghost", "virtual_batch_size": 2}, (6, 3, 2, 2),
        "eval", STEPS)
    add("ghost_eval_any_batch", {"type": "ghost", "virtual_batch_size": 4}, (3, 3, 5), "eval", 0)
    add("ghost_notrack_eval", {"type": "ghost", "virtual_batch_size": 2,
                               "track_running_stats": False}, (4, 3, 5), "eval", 0)

    # Tight limits clip r and d in some channels; the defaults mostly do not.
    add("batch_renorm_2d_clipped_train",
        {"type": "batch_renorm", "rmax": 1.5, "dmax": 0.5, "warmup_steps": 0}, (6, 8), "train", 0)
    add("batch_renorm_4d_train", {"type": "batch_renorm", "warmup_steps": 0}, (3, 4, 3, 3),
        "train", 0)
    add("batch_renorm_3d_clipped_steps_train",
        {"type": "batch_renorm", "rmax": 1.2, "dmax": 0.3, "warmup_steps": 0, "momentum": 0.3},
        (4, 6, 5), "train", STEPS)
    # Warm-up: the measured forward is step 3 of 4 (rmax 1.75, dmax 0.75).
    add("batch_renorm_warmup_steps_train",
        {"type": "batch_renorm", "rmax": 2.0, "dmax": 1.0, "warmup_steps": 4}, (4, 6, 5),
        "train", STEPS)
    # Step 0 of a warm-up: r = 1, d = 0, BatchNorm exactly.
    add("batch_renorm_warmup_start_train", {"type": "batch_renorm"}, (2, 3, 4), "train", 0)
    add("batch_renorm_noaffine_train",
        {"type": "batch_renorm", "affine": False, "rmax": 1.5, "dmax": 0.5, "warmup_steps": 0},
        (4, 3, 5), "train", 0)
    add("batch_renorm_eval", {"type": "batch_renorm"}, (2, 3, 5, 5), "eval", 0)
    add("batch_renorm_steps_eval", {"type": "batch_renorm", "warmup_steps": 2, "eps": 1e-3},
        (3, 4, 5), "eval", STEPS)

    # FRN: tau is drawn so that a good fraction of the outputs is clipped by the TLU.
    for mode in ("train", "eval"):
        add(f"frn_4d_{mode}", {"type": "frn"}, (2, 3, 4, 5), mode, 0)
    add("frn_3d_notlu_train", {"type": "frn", "tlu": False}, (3, 4, 7), "train", 0)
    add("frn_eps_train", {"type": "frn", "eps": 1e-3}, (2, 3, 2, 2), "train", 0)
    # Activations of mean 50: x / sqrt(nu2) is near 1 everywhere, so a channel's outputs lie
    # in a narrow band (tau inside it) and nu2 is large against the spread of x.
    add("frn_4d_scaled_train", {"type": "frn"}, (2, 3, 4, 5), "train", 0, {"x_mean": 50.0})

    for mode in ("train", "eval"):
        add(f"evonorm_s0_4d_{mode}", {"type": "evonorm_s0", "groups": 2}, (2, 4, 3, 5), mode, 0)
    add("evonorm_s0_2d_train", {"type": "evonorm_s0", "groups": 3}, (5, 6), "train", 0)
    add("evonorm_s0_3d_groups1_train", {"type": "evonorm_s0", "groups": 1}, (3, 4, 6), "train", 0)
    add("evonorm_s0_instance_like_train", {"type": "evonorm_s0", "groups": 4}, (2, 4, 3, 3),
        "train", 0)

    # Frozen BatchNorm: the running statistics in train mode, not updated; the affine trains.
    add("batch_frozen_4d_train", {"type": "batch", "frozen": True}, (2, 3, 5, 5), "train", 0)
    add("batch_frozen_2d_train", {"type": "batch", "frozen": True}, (2, 4), "train", 0)
    add("batch_frozen_noaffine_train", {"type": "batch", "frozen": True, "affine": False},
        (3, 4, 6), "train", 0)
    add("batch_frozen_steps_train", {"type": "batch", "frozen": True, "eps": 1e-3},
        (2, 3, 4, 4), "train", 0, {"sequence": ["train"] * 3 + ["eval"]})

    add("dyt_4d_train", {"type": "dyt"}, (2, 3, 4, 5), "train", 0)
    add("dyt_2d_train", {"type": "dyt", "alpha_init": 1.5}, (4, 6), "train", 0)
    add("dyt_3d_eval", {"type": "dyt"}, (2, 5, 7), "eval", 0)

    for mode in ("train", "eval"):
        add(f"switchable_4d_{mode}", {"type": "switchable"}, (2, 3, 4, 5), mode, 0)
    add("switchable_3d_train", {"type": "switchable", "eps": 1e-3}, (3, 4, 6), "train", 0)
    add("switchable_2d_train", {"type": "switchable"}, (4, 5), "train", 0)
    add("switchable_n2_steps", {"type": "switchable", "momentum": 0.3}, (2, 4, 3, 3), "train", 0,
        {"sequence": ["train"] * 3 + ["eval"]})

    # MABN: small buffers and no warm-up, so that a few steps pass from the batch's own
    # statistics (t <= buffer_size) to the moving averages and, after renorm_start, to r.
    mabn = {"type": "mabn", "buffer_size": 2, "warmup_steps": 0, "renorm_start": 3,
            "rmax": 1.5, "momentum": 0.3}
    add("mabn_4d_steps", mabn, (2, 3, 4, 4), "train", 0, {"sequence": ["train"] * 6 + ["eval"]})
    add("mabn_2d_steps", dict(mabn, buffer_size=3), (2, 5), "train", 0,
        {"sequence": ["train"] * 6 + ["eval"]})
    add("mabn_warmup_steps", dict(mabn, warmup_steps=4, renorm_start=0), (3, 4, 5), "train", 0,
        {"sequence": ["train"] * 6})
    add("mabn_4d_eval", {"type": "mabn"}, (2, 3, 4, 5), "eval", 0)
    add("weight_centering_2d_dim0", {"type": "weight_centering", "dim": 0}, (4, 3), "train", 0)
    add("weight_centering_4d_dim0", {"type": "weight_centering", "dim": 0}, (5, 3, 3, 3),
        "train", 0)
    add("weight_centering_4d_dim1", {"type": "weight_centering", "dim": 1}, (5, 3, 3, 3), "eval",
        0)
    add("mabn_4d_first_train", {"type": "mabn"}, (2, 3, 4, 5), "train", 0)

    # Cross-Iteration BN: windows of 3 steps that fill and roll over within the
    # sequence, x made by a layer in front whose weight moves each step (K inputs per
    # output, relative drift), as a linear layer (N, C) and a 1x1 convolution
    # (N, C, H, W); a large drift pushes compensated steps out of the window; without
    # the layer, the window is averaged as it is.
    cibn = {"type": "cross_iteration_batch", "window": 3, "momentum": 0.3}
    cibn_steps = {"sequence": ["train"] * 6 + ["eval"]}
    add("cross_iteration_batch_2d_steps", cibn, (4, 5), "train", 0,
        dict(cibn_steps, preceding=(3, 0.1)))
    add("cross_iteration_batch_4d_steps", dict(cibn, burn_in=2), (2, 3, 3, 4), "train", 0,
        dict(cibn_steps, preceding=(2, 0.1)))
    add("cross_iteration_batch_dropped_steps", dict(cibn, window=4), (2, 4, 3), "train", 0,
        dict(cibn_steps, preceding=(2, 1.5), expect_dropped=True))
    add("cross_iteration_batch_uncompensated_steps", cibn, (3, 4, 5), "train", 0, cibn_steps)

    # Channels last, column blocks of more than 256 rows: their apply runs in the data type
    # (kColumnRowsInDouble in src/engine/engine_kernels.cpp); these shapes reach it.
    for mode in ("train", "eval"):
        add(f"batch_4d_tall_{mode}", {"type": "batch"}, (4, 8, 12, 12), mode, 0)
    add("group_tall_train", {"type": "group", "groups": 2}, (2, 4, 18, 18), "train", 0)
    add("instance_tall_train", {"type": "instance", "affine": True}, (2, 3, 17, 17), "train", 0)

    add("none_2d_train", {"type": "none"}, (4, 3), "train", 0)
    add("none_4d_eval", {"type": "none"}, (2, 3, 4, 5), "eval", 0)
    return c


def remove_previous_cases():
    """Deletes the case directories the last manifest listed, so none go stale."""
    path = os.path.join(HERE, "cases.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        for case in json.load(f)["cases"]:
            shutil.rmtree(os.path.join(HERE, case["name"]), ignore_errors=True)


def bfloat16_case(base, drawn, compute):
    """The arrays and the manifest entry of the bfloat16 case of `base` (see the top)."""
    # The float32 case's inputs, rounded to bfloat16 (torch rounds float to
    # bfloat16 to nearest even, as normlab does).
    inputs = {k: v.to(torch.float32).to(torch.bfloat16) for k, v in drawn.items()}
    reference = compute({k: v.double() for k, v in inputs.items()}, torch.bfloat16)
    reference.pop("dropped", 0)
    own = compute(inputs, torch.bfloat16)
    own.pop("dropped", 0)
    assert sorted(own) == sorted(reference)
    errors = {k: scaled_error(own[k], reference[k]) for k in sorted(reference)}
    assert max(errors.values()) < 0.5, (base, errors)  # a broken reference, not rounding
    arrays = {k: v.float() for k, v in inputs.items()}
    arrays.update({k: v.double() for k, v in reference.items()})
    return arrays, {"torch_bfloat16_error": errors}


def save_case(name, arrays):
    shutil.rmtree(os.path.join(HERE, name), ignore_errors=True)  # left by an interrupted run
    os.makedirs(os.path.join(HERE, name))
    for key, value in sorted(arrays.items()):
        np.save(os.path.join(HERE, name, key + ".npy"),
                np.ascontiguousarray(value.detach().numpy()))


def main():
    torch.set_num_threads(1)
    remove_previous_cases()
    manifest = []
    assert BFLOAT16_CASES <= {base for base, *_ in cases()}, "BFLOAT16_CASES names no case"
    for base, spec, shape, mode, steps, *options in cases():
        torch.manual_seed(zlib.crc32(base.encode()))  # the same draws for both dtypes
        options = options[0] if options else {}
        sequence = options.pop("sequence", None)
        preceding = options.pop("preceding", None)
        expect_dropped = options.pop("expect_dropped", False)
        if spec["type"] == "weight":
            drawn = draw_weight_inputs(spec, shape, given_g=not base.endswith("init_g"))
            compute = lambda inputs, data_dtype: compute_weight(spec, shape, inputs)
        elif spec["type"] == "weight_centering":
            drawn = draw_weight_inputs(spec, shape, given_g=False)
            compute = lambda inputs, data_dtype: compute_weight_centering(spec, inputs)
        elif sequence:
            drawn = draw_sequence_inputs(spec, shape, sequence, preceding)
            compute = lambda inputs, data_dtype: compute_sequence(spec, shape, sequence, inputs,
                                                                  data_dtype)
        else:
            drawn = draw_module_inputs(spec, shape, steps, **options)
            compute = lambda inputs, data_dtype: compute_module(spec, shape, mode, steps, inputs,
                                                                data_dtype)
        for dtype_name, (dtype, suffix) in DTYPES.items():
            inputs = {k: v.to(dtype) for k, v in drawn.items()}
            # The reference is computed in float64 from the dtype's inputs, then rounded:
            # torch's float32 kernels accumulate in float32 and lose digits on groups of
            # two values (dx there is a cancellation of order eps), normlab accumulates in
            # double. torch's own float32 result is kept as a check of its error.
            reference = compute({k: v.double() for k, v in inputs.items()}, dtype)
            # Cross-Iteration BN: how many earlier steps the window left out; a case
            # made to reach that branch must.
            dropped = reference.pop("dropped", 0)
            assert dropped > 0 if expect_dropped else True, (base, "no step was left out")
            entry = {}
            if dtype == torch.float32:
                own = compute(inputs, dtype)
                own.pop("dropped", 0)
                assert sorted(own) == sorted(reference)
                entry["torch_float32_error"] = max(scaled_error(own[k], reference[k])
                                                   for k in reference)
                assert entry["torch_float32_error"] < 1e-2, (base, entry)
            arrays = dict(inputs, **{k: v.to(dtype) for k, v in reference.items()})
            name = f"{base}_{suffix}"
            for key, value in arrays.items():
                assert value.dtype == dtype, (name, key, value.dtype)
            save_case(name, arrays)
            manifest.append(dict({
                "name": name,
                "spec": spec,
                "dtype": dtype_name,
                "mode": mode,
                "train_steps": steps,
                "shape": list(shape),
                "files": sorted(arrays),
            }, **entry, **({"sequence": sequence} if sequence else {})))
        if base in BFLOAT16_CASES:
            arrays, entry = bfloat16_case(base, drawn, compute)
            save_case(f"{base}_bf16", arrays)
            manifest.append(dict({
                "name": f"{base}_bf16",
                "spec": spec,
                "dtype": "bfloat16",
                "mode": mode,
                "train_steps": steps,
                "shape": list(shape),
                "files": sorted(arrays),
            }, **entry, **({"sequence": sequence} if sequence else {})))
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump({"generator": "tests/golden/make_golden.py",
                   "torch": torch.__version__,
                   "cases": manifest}, f, indent=1)
        f.write("\n")
    worst = max(c.get("torch_float32_error", 0) for c in manifest)
    worst_bf16 = max(max(c.get("torch_bfloat16_error", {0: 0}).values()) for c in manifest)
    print(f"{len(manifest)} cases written to {HERE}; "
          f"torch float32 vs float64 reference: largest scaled error {worst:.3g}; "
          f"torch bfloat16: {worst_bf16:.3g}")


if __name__ == "__main__":
    main()
