"""normlab.torch: normlab norms inside PyTorch models, checked against torch's
own modules (forward, input and parameter gradients, running statistics) and
by training a small model.

Run by ctest (python_torch); exits 77 (ctest: skipped) with a message where
numpy or torch is not importable.
"""

import copy
import sys
import unittest

try:
    import numpy  # noqa: F401  (normlab's arrays)
    import torch
except ImportError as e:
    print(f"SKIPPED: {e.name} is not importable by {sys.executable}")
    sys.exit(77)

import normlab
import normlab.torch
from norm_specs import buildable_norms, spec_for_4_channels


def randomize_affine(layer, generator):
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


class AgainstTorchModulesTest(unittest.TestCase):
    """Each case: a normlab spec, the torch module it should equal, an input shape."""

    CASES = [
        ("batch", lambda c: torch.nn.BatchNorm2d(c), (6, 4, 5, 5)),
        ("batch", lambda c: torch.nn.BatchNorm1d(c), (7, 4)),
        ({"type": "group", "groups": 2}, lambda c: torch.nn.GroupNorm(2, c), (3, 4, 5, 5)),
        ({"type": "instance", "affine": True, "track_running_stats": False},
         lambda c: torch.nn.InstanceNorm2d(c, affine=True), (3, 4, 5, 5)),
        ({"type": "layer", "normalized_shape": [4]}, lambda c: torch.nn.LayerNorm(c), (5, 4)),
        ({"type": "layer", "normalized_shape": [4, 3, 3]},
         lambda c: torch.nn.LayerNorm([c, 3, 3]), (5, 4, 3, 3)),
    ]

    def check_case(self, spec, make_reference, shape, dtype, tolerance):
        generator = torch.Generator().manual_seed(0)
        channels = shape[1]
        reference = make_reference(channels).to(dtype)
        randomize_affine(reference, generator)
        layer = normlab.torch.NormLayer(spec, channels, dtype=dtype)
        # torch names them weight and bias; normlab gamma and beta.
        with torch.no_grad():
            layer.gamma.copy_(reference.weight)
            layer.beta.copy_(reference.bias)
        for step in range(3):  # running statistics evolve over steps
            x = 2 + 3 * torch.randn(shape, generator=generator, dtype=dtype)
            dy = torch.randn(shape, generator=generator, dtype=dtype)
            outputs = []
            for module in (layer, reference):
                xi = x.clone().requires_grad_(True)
                module.zero_grad()
                y = module(xi)
                y.backward(dy)
                outputs.append((y.detach(), xi.grad, module.gamma.grad if module is layer
                                else module.weight.grad, module.beta.grad if module is layer
                                else module.bias.grad))
            for ours, theirs, what in zip(outputs[0], outputs[1], ("y", "dx", "dgamma", "dbeta")):
                torch.testing.assert_close(ours, theirs, rtol=tolerance, atol=tolerance,
                                           msg=lambda m: f"{spec} step {step} {what}: {m}")
        if hasattr(reference, "running_mean") and reference.running_mean is not None:
            torch.testing.assert_close(layer.running_mean, reference.running_mean, rtol=tolerance,
                                       atol=tolerance)
            torch.testing.assert_close(layer.running_var, reference.running_var, rtol=tolerance,
                                       atol=tolerance)
            # Eval uses them, in both.
            layer.eval()
            reference.eval()
            x = torch.randn(shape, generator=generator, dtype=dtype)
            torch.testing.assert_close(layer(x), reference(x), rtol=tolerance, atol=tolerance)

    def test_float64_matches_closely(self):
        for spec, make_reference, shape in self.CASES:
            with self.subTest(spec=spec, shape=shape):
                self.check_case(spec, make_reference, shape, torch.float64, 1e-10)

    def test_float32_matches(self):
        for spec, make_reference, shape in self.CASES:
            with self.subTest(spec=spec, shape=shape):
                self.check_case(spec, make_reference, shape, torch.float32, 1e-4)


class ModuleBehaviourTest(unittest.TestCase):
    def test_parameters_buffers_and_state_dict(self):
        layer = normlab.torch.NormLayer("batch", 3)
        self.assertEqual([name for name, _ in layer.named_parameters()], ["gamma", "beta"])
        self.assertEqual(sorted(name for name, _ in layer.named_buffers()),
                         ["running_mean", "running_var"])
        layer(torch.randn(8, 3) + 5)
        self.assertGreater(float(layer.running_mean.min()), 0.1)  # updated by the forward
        restored = normlab.torch.NormLayer("batch", 3)
        restored.load_state_dict(layer.state_dict())
        restored.eval()
        layer.eval()
        x = torch.randn(4, 3)
        torch.testing.assert_close(restored(x), layer(x))

    def test_every_registered_norm_fits_in_a_module(self):
        x = torch.sin(torch.arange(4 * 4 * 3 * 3, dtype=torch.float32)).reshape(4, 4, 3, 3) + 0.5
        for name in buildable_norms(self):
            with self.subTest(norm=name):
                layer = normlab.torch.NormLayer(spec_for_4_channels(name), 4)
                xi = x.clone().requires_grad_(True)
                layer(xi).square().sum().backward()
                self.assertTrue(torch.isfinite(xi.grad).all())
                for parameter in layer.parameters():
                    self.assertIsNotNone(parameter.grad)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "unknown type 'nope'"):
            normlab.torch.NormLayer("nope", 3)
        layer = normlab.torch.NormLayer("batch", 3)
        with self.assertRaisesRegex(ValueError, "input is torch.float64"):
            layer(torch.randn(4, 3, dtype=torch.float64))
        with self.assertRaisesRegex(ValueError, "3 channels|channels"):
            layer(torch.randn(4, 5))
        # Two forwards, then the first one's backward: refused, not silently wrong.
        x = torch.randn(4, 3, requires_grad=True)
        first = layer(x).sum()
        layer(x).sum()
        with self.assertRaisesRegex(RuntimeError, "backward must follow the layer's own last forward"):
            first.backward()


class TrainingTest(unittest.TestCase):
    def test_trains_a_small_model_as_torch_batchnorm_does(self):
        """The same CNN with normlab's BatchNorm and with torch's, from the same
        initial weights on the same batches: the losses fall, and follow each other."""
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(64, 1, 8, 8, generator=generator)
        labels = (images[:, 0, :4].mean(dim=(1, 2)) > images[:, 0, 4:].mean(dim=(1, 2))).long()

        def model(norm):
            return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), norm, torch.nn.ReLU(),
                                       torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))

        torch.manual_seed(1)
        theirs = model(torch.nn.BatchNorm2d(4))
        ours = model(normlab.torch.NormLayer("batch", 4))
        ours[0].load_state_dict(copy.deepcopy(theirs[0].state_dict()))
        ours[4].load_state_dict(copy.deepcopy(theirs[4].state_dict()))
        losses = {"ours": [], "theirs": []}
        for name, net in (("ours", ours), ("theirs", theirs)):
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            for step in range(40):
                batch = slice((step % 4) * 16, (step % 4 + 1) * 16)
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(images[batch]), labels[batch])
                loss.backward()
                optimizer.step()
                losses[name].append(loss.item())
        self.assertLess(sum(losses["ours"][-4:]) / 4, 0.5 * sum(losses["ours"][:4]) / 4)
        for step, (a, b) in enumerate(zip(losses["ours"], losses["theirs"])):
            self.assertAlmostEqual(a, b, delta=1e-3, msg=f"step {step}")
        ours.eval()
        theirs.eval()
        torch.testing.assert_close(ours(images), theirs(images), rtol=1e-3, atol=1e-3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
