"""The normlab Python module on numpy arrays: the contract of docs/python.md.

Run by ctest (python_module) with the built module on PYTHONPATH; exits 77
(ctest: skipped) with a message where numpy or the module is not importable.
"""

import json
import os
import sys
import tempfile
import unittest

try:
    import numpy as np
except ImportError:
    print(f"SKIPPED: numpy is not importable by {sys.executable}")
    sys.exit(77)

import normlab
from norm_specs import buildable_norms, spec_for_4_channels


def reference_group_norm(x, groups, gamma, beta, eps):
    """GroupNorm in plain numpy: per sample and group of channels."""
    n, c = x.shape[:2]
    blocks = x.reshape(n, groups, -1).astype(np.float64)
    mean = blocks.mean(axis=2, keepdims=True)
    var = blocks.var(axis=2, keepdims=True)
    xhat = ((blocks - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


class RegistryTest(unittest.TestCase):
    def test_version_and_norms(self):
        self.assertRegex(normlab.__version__, r"^\d+\.\d+\.\d+$")
        names = normlab.norms()
        self.assertGreaterEqual(len(names), 10)
        for name in ("batch", "group", "layer", "instance", "frn", "sync_batch"):
            self.assertIn(name, names)
        self.assertEqual(names, sorted(names))

    def test_norm_info_and_resolve_spec(self):
        info = normlab.norm_info("group")
        self.assertEqual(info["type"], "group")
        self.assertIn("groups", [option["key"] for option in info["options"]])
        self.assertEqual(info["parameters"], ["gamma", "beta"])
        self.assertEqual(info["unavailable"], "")  # every build can make a GroupNorm
        resolved = normlab.resolve_spec({"type": "group", "groups": 4})
        self.assertEqual(resolved["groups"], 4)
        self.assertIn("eps", resolved)


class NormTest(unittest.TestCase):
    def test_group_norm_matches_numpy(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 6, 4, 5)).astype(np.float32)
        norm = normlab.Norm({"type": "group", "groups": 3}, 6)
        gamma = rng.standard_normal(6).astype(np.float32)
        beta = rng.standard_normal(6).astype(np.float32)
        norm.set_parameter("gamma", gamma)
        norm.set_parameter("beta", beta)
        y = norm.forward(x)
        self.assertEqual(y.dtype, np.float32)
        self.assertEqual(y.shape, x.shape)
        np.testing.assert_allclose(y, reference_group_norm(x, 3, gamma, beta, 1e-5), atol=1e-5)
        np.testing.assert_array_equal(norm.parameters()["gamma"], gamma)

    def test_backward_gradients_against_finite_differences(self):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((4, 3, 5))
        dy = rng.standard_normal((4, 3, 5))
        norm = normlab.Norm("batch", 3, dtype="float64")
        norm.set_parameter("gamma", rng.standard_normal(3))
        norm.forward(x)
        dx = norm.backward(dy)
        grads = norm.gradients()
        self.assertEqual(set(grads), {"gamma", "beta"})
        np.testing.assert_allclose(grads["beta"], dy.sum(axis=(0, 2)), rtol=1e-12)

        def loss(values):
            probe = normlab.Norm("batch", 3, dtype=np.float64)
            probe.set_parameter("gamma", norm.parameters()["gamma"])
            return float((probe.forward(values) * dy).sum())

        h = 1e-6
        for index in [(0, 0, 0), (1, 2, 3), (3, 1, 4)]:
            plus, minus = x.copy(), x.copy()
            plus[index] += h
            minus[index] -= h
            self.assertAlmostEqual(dx[index], (loss(plus) - loss(minus)) / (2 * h), places=5)

        # Gradients accumulate over backwards until zero_grad, as in the library.
        norm.backward(dy)
        np.testing.assert_allclose(norm.gradients()["beta"], 2 * dy.sum(axis=(0, 2)))
        norm.zero_grad()
        np.testing.assert_array_equal(norm.gradients()["beta"], np.zeros(3))

    def test_running_state_readable_and_used_in_eval(self):
        rng = np.random.default_rng(2)
        x = (3 + 2 * rng.standard_normal((16, 2, 3, 3))).astype(np.float32)
        norm = normlab.Norm({"type": "batch", "momentum": 1.0}, 2)
        self.assertEqual(norm.state_names, ["running_mean", "running_var"])
        norm.forward(x, training=True)
        state = norm.state()
        np.testing.assert_allclose(state["running_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-5)
        np.testing.assert_allclose(state["running_var"], x.var(axis=(0, 2, 3), ddof=1), rtol=1e-4)
        stats = norm.batch_statistics()
        np.testing.assert_allclose(stats["mean"], state["running_mean"], rtol=1e-6)
        # Eval normalizes with the running statistics: a shifted batch stays shifted.
        y = norm.forward(x + 1, training=False)
        np.testing.assert_allclose(
            y.mean(axis=(0, 2, 3)), 1 / np.sqrt(state["running_var"] + 1e-5), rtol=1e-4)
        self.assertEqual(norm.state()["running_mean"].tolist(), state["running_mean"].tolist())

    def test_float64_and_layout_and_spec(self):
        norm = normlab.Norm({"type": "group", "groups": 2, "layout": "nhwc"}, 4, dtype="float64")
        self.assertEqual(norm.dtype, "float64")
        self.assertEqual(norm.layout, "nhwc")
        self.assertEqual(norm.type, "group")
        self.assertEqual(norm.spec["groups"], 2)
        x = np.random.default_rng(3).standard_normal((2, 3, 3, 4))
        first = normlab.Norm({"type": "group", "groups": 2}, 4, dtype="float64")
        np.testing.assert_allclose(
            norm.forward(x), first.forward(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1),
            atol=1e-12)
        self.assertIn("group", repr(norm))

    def test_arrays_converted_when_not_contiguous_or_other_dtype(self):
        x = np.random.default_rng(4).standard_normal((5, 4, 6))
        norm = normlab.Norm("layer", 6)  # float32 norm, float64 input: converted
        y = norm.forward(x)
        self.assertEqual(y.dtype, np.float32)
        transposed = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
        self.assertFalse(transposed.flags.c_contiguous)
        np.testing.assert_allclose(norm.forward(transposed), y, atol=1e-6)
        # The result owns its memory (the library's array, handed over) and is writable.
        self.assertTrue(y.flags.writeable and y.flags.c_contiguous)
        y[...] = 0  # must not disturb the norm
        np.testing.assert_allclose(norm.forward(x), norm.forward(x.copy()), atol=0)

    def test_every_registered_norm_runs_forward_and_backward(self):
        x = np.sin(np.arange(4 * 4 * 3 * 3, dtype=np.float32)).reshape(4, 4, 3, 3) + 0.5
        for name in buildable_norms(self):
            with self.subTest(norm=name):
                norm = normlab.Norm(spec_for_4_channels(name), 4)
                y = norm.forward(x)
                dx = norm.backward(np.ones_like(y))
                self.assertTrue(np.isfinite(y).all() and np.isfinite(dx).all())
                self.assertEqual(set(norm.gradients()), set(norm.parameter_names))


class ErrorTest(unittest.TestCase):
    """User errors are normlab.Error, a ValueError with the library's message."""

    def assert_error(self, pattern, call, *args, **kwargs):
        with self.assertRaisesRegex(ValueError, pattern) as caught:
            call(*args, **kwargs)
        self.assertIsInstance(caught.exception, normlab.Error)

    def test_spec_errors(self):
        self.assert_error(r"unknown type 'batchnorm' \(use one of batch,", normlab.Norm,
                          "batchnorm", 4)
        self.assert_error(r"unknown key 'grups'", normlab.Norm, {"type": "group", "grups": 2}, 4)
        self.assert_error(r"eps: expected a number >= 0, got -1", normlab.Norm,
                          {"type": "batch", "eps": -1}, 4)
        self.assert_error(r"norm spec\.eps: expected a dict, list, str, number, bool or None",
                          normlab.Norm, {"type": "batch", "eps": object()}, 4)
        self.assert_error(r"dtype must be float32 or float64, got int32", normlab.Norm, "batch", 4,
                          dtype="int32")

    def test_shape_and_order_errors(self):
        norm = normlab.Norm({"type": "group", "groups": 2}, 4)
        self.assert_error(r"backward called before any forward", norm.backward,
                          np.ones((2, 4, 3), np.float32))
        self.assert_error(r"channels", norm.forward, np.ones((2, 5, 3), np.float32))
        norm.forward(np.ones((2, 4, 3), np.float32))
        self.assert_error(r"gradient has shape \(2, 4, 2\)", norm.backward,
                          np.ones((2, 4, 2), np.float32))
        self.assert_error(r"batch norm needs more than one value per channel",
                          normlab.Norm("batch", 4).forward, np.ones((1, 4), np.float32))
        self.assert_error(r"forward: x: expected an array of numbers, got str", norm.forward,
                          "not an array")
        self.assert_error(r"gamma", norm.set_parameter, "gamma", np.ones(3, np.float32))
        self.assert_error(r"no_such", norm.set_parameter, "no_such", np.ones(4, np.float32))

    def test_failed_forward_refuses_backward_from_it(self):
        # A forward that fails after a good one must not leave backward reading
        # the new shape against the old saved input.
        norm = normlab.Norm({"type": "group", "groups": 2}, 4)
        norm.forward(np.ones((8, 4, 3), np.float32) + np.arange(3, dtype=np.float32))
        self.assert_error(r"channels", norm.forward, np.ones((1, 6, 1), np.float32))
        self.assert_error(r"backward", norm.backward, np.ones((1, 6, 1), np.float32))
        self.assert_error(r"backward", norm.backward, np.ones((8, 4, 3), np.float32))

    def test_bad_config_and_folder(self):
        config = {"name": "bad", "dataset": {"type": "synthetic"}, "model": "mlp2",
                  "norms": ["batch"], "batch_sizes": [8], "seeds": [0], "epochs": "two"}
        self.assert_error(r"epochs: expected", normlab.run, config)
        with tempfile.TemporaryDirectory() as folder:
            self.assert_error(r"config\.json", normlab.load_results, folder)
            path = os.path.join(folder, "bad.json")
            with open(path, "w") as f:
                f.write("{ not json")
            self.assert_error(r"bad\.json: not valid JSON", normlab.run, path)
        self.assert_error(r"not a folder", normlab.load_results, "/no/such/folder")


class ExperimentTest(unittest.TestCase):
    def test_run_a_dict_config_then_load_it_and_resume(self):
        config = {
            "name": "python_test",
            "dataset": {"type": "synthetic", "train_size": 64, "test_size": 32, "classes": 3},
            "model": "mlp2",
            "norms": ["batch", {"type": "group", "groups": 2}],
            "batch_sizes": [8],
            "seeds": [0],
            "epochs": 1,
        }
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "run")
            records = normlab.run(config, out=out)
            self.assertEqual(len(records), 2)
            self.assertEqual([r["cell"] for r in records], ["batch/B8/seed0", "group(groups=2)/B8/seed0"])
            for record in records:
                self.assertEqual(record["batch_size"], 8)
                self.assertGreaterEqual(record["test_error"], 0)
            loaded = normlab.load_results(out)
            self.assertEqual(loaded["records"], records)
            self.assertEqual(loaded["config"]["name"], "python_test")
            # A path works too, and a second run resumes: nothing is trained again
            # (a cell trained again would differ at least in its wall time).
            path = os.path.join(folder, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            self.assertEqual(normlab.run(path, out=out), records)


if __name__ == "__main__":
    unittest.main(verbosity=2)
