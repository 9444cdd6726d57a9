"""normlab norms inside PyTorch models, on CPU.

    import torch, normlab.torch
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3),
        normlab.torch.NormLayer({"type": "frn"}, channels=8),
        torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10))

NormLayer is an nn.Module: its learned parameters are nn.Parameters (named as
normlab names them: gamma, beta, ...), its running statistics buffers, so
optimizers, state_dict and train()/eval() work as with torch's own norms.
Forward and backward run in normlab's engine through an autograd Function.
"""

import torch

from . import Norm, norm_info

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class _NormFunction(torch.autograd.Function):
    """y = norm(x) with the layer's parameters; backward gives dx and their gradients."""

    @staticmethod
    def forward(ctx, layer, x, *parameters):
        y = layer._normlab_forward(x)
        ctx.layer = layer
        ctx.forward_number = layer._forward_number
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        layer = ctx.layer
        # A normlab norm keeps what backward needs for its last forward only.
        if layer._forward_number != ctx.forward_number:
            raise RuntimeError(
                "normlab.torch.NormLayer: backward must follow the layer's own last forward "
                "(the layer ran forward again before this backward; use one NormLayer per use)"
            )
        dx, gradients = layer._normlab_backward(dy)
        return (None, dx, *gradients)


class NormLayer(torch.nn.Module):
    """A normlab norm as a torch module: NormLayer(spec, channels, dtype=torch.float32).

    spec is a registered type's name or a spec dict (see normlab.norms() and
    normlab.norm_info()); channels is the size of the input's dimension 1.
    """

    def __init__(self, spec, channels, dtype=torch.float32):
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"NormLayer: dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self.norm = Norm(spec, channels, _DTYPES[dtype])
        self._forward_number = 0
        # In the order the registry lists them (gamma before beta, as torch's weight and bias).
        listed = norm_info(self.norm.type)["parameters"]
        self._parameter_names = sorted(
            self.norm.parameter_names, key=lambda n: listed.index(n) if n in listed else len(listed))
        self._state_names = list(self.norm.state_names)
        parameters = self.norm.parameters()
        for name in self._parameter_names:
            self.register_parameter(name, torch.nn.Parameter(torch.from_numpy(parameters[name])))
        for name, value in self.norm.state().items():
            self.register_buffer(name, torch.from_numpy(value))

    def forward(self, x):
        if x.dtype != self.dtype:
            raise ValueError(f"NormLayer: input is {x.dtype}, the layer is {self.dtype}")
        if x.device.type != "cpu":
            raise ValueError(f"NormLayer: runs on the CPU, the input is on {x.device}")
        parameters = [getattr(self, name) for name in self._parameter_names]
        return _NormFunction.apply(self, x, *parameters)

    def extra_repr(self):
        return repr(self.norm.spec)

    # The module's tensors are the truth (optimizers, load_state_dict write
    # them): they are given to the norm before each forward, and the running
    # statistics it updated are read back after.
    def _normlab_forward(self, x):
        for name in self._parameter_names + self._state_names:
            self.norm.set_parameter(name, getattr(self, name).detach().numpy())
        y = self.norm.forward(x.detach().contiguous().numpy(), training=self.training)
        self._forward_number += 1
        if self.training:
            with torch.no_grad():
                for name, value in self.norm.state().items():
                    getattr(self, name).copy_(torch.from_numpy(value))
        return torch.from_numpy(y)

    def _normlab_backward(self, dy):
        self.norm.zero_grad()
        dx = self.norm.backward(dy.contiguous().numpy())
        gradients = self.norm.gradients()
        return torch.from_numpy(dx), [torch.from_numpy(gradients[n]) for n in self._parameter_names]
