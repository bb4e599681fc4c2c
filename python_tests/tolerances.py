"""One table of tolerances for every comparison against the reference.

(atol, rtol) per dtype. float64 is tight: the fused ops do the same arithmetic in a
different order. Half precisions follow the rule "kernel error vs a float64
reference at most ~2x the error of PyTorch itself in that dtype"; tests that compare
low precision compute that bound directly (see `assert_low_precision_close`).
"""

import torch

TOLERANCES = {
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (5e-2, 5e-2),
}


def tol(dtype):
    atol, rtol = TOLERANCES[dtype]
    return {"atol": atol, "rtol": rtol}


def assert_close(actual, expected, name=""):
    """torch.testing.assert_close with the table's tolerance; prints the error first."""
    if actual is None or expected is None:
        assert actual is None and expected is None, f"{name}: one side is None"
        return
    err = (actual.double() - expected.double()).abs()
    print(f"{name}: max err {err.max().item() if err.numel() else 0:.3e} "
          f"mean err {err.mean().item() if err.numel() else 0:.3e}")
    torch.testing.assert_close(actual, expected, **tol(expected.dtype), msg=lambda m: f"{name}: {m}")


def assert_low_precision_close(actual, expected_lowp, expected_f64, name="", factor=2.0):
    """Kernel error vs float64 at most `factor` x PyTorch's own low-precision error
    (plus a small floor for outputs that PyTorch happens to get exactly)."""
    kernel_err = (actual.double() - expected_f64).abs().max().item()
    torch_err = (expected_lowp.double() - expected_f64).abs().max().item()
    floor = TOLERANCES[actual.dtype][0] * 0.1
    print(f"{name}: kernel err {kernel_err:.3e}, torch err {torch_err:.3e}")
    assert kernel_err <= factor * torch_err + floor, (
        f"{name}: kernel error {kernel_err:.3e} exceeds {factor}x PyTorch's {torch_err:.3e}")
