"""normlab from Python: every registered normalization layer on numpy arrays,
experiments run and read, and (normlab.torch) the norms inside PyTorch models.

    import numpy as np, normlab
    norm = normlab.Norm({"type": "group", "groups": 2}, channels=4)
    y = norm.forward(np.random.randn(8, 4, 5, 5).astype(np.float32))
    dx = norm.backward(np.ones_like(y))
    norm.gradients()["gamma"]

See docs/python.md.
"""

from ._normlab import (  # noqa: F401  (the public API)
    Error,
    Norm,
    __version__,
    load_results,
    norm_info,
    norms,
    num_threads,
    resolve_spec,
    run,
    set_num_threads,
)

__all__ = [
    "Error",
    "Norm",
    "__version__",
    "load_results",
    "norm_info",
    "norms",
    "num_threads",
    "resolve_spec",
    "run",
    "set_num_threads",
]
