"""The drop-in modules on a GPU: a model moved with `.cuda()` trains like the same model
on the CPU. float32 on the GPU (CUDA C++ or Triton kernels) against float64 on the CPU
over several optimizer steps, every parameter compared; skipped without a GPU.

The op tests check each kernel call; these check what a user's training loop adds on
top: parameters, optimizer state and the carried LSTM state living on the GPU, the
modules' autograd glue, and the backend choice reaching every call.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from dni_kernels.nn import DNILSTM
from nn_helpers import CLASSES, batches, make_mlp, params
from tolerances import assert_close

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
BACKENDS = ["cuda", "triton"]
STEPS = 3


def _assert_params_close(gpu_model, cpu_model):
    cpu = params(cpu_model)
    for name, p in params(gpu_model).items():
        assert p.is_cuda, f"{name} left the GPU"
        assert_close(p.cpu(), cpu[name].float(), name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("update", ["grads", "sgd"])
@pytest.mark.parametrize("conditioned", [None, CLASSES])
def test_dnimlp_on_gpu_trains_like_cpu(backend, update, conditioned):
    """SGD with momentum in "grads" mode (Adam's normalisation would magnify float32
    rounding of near-zero gradients); the fused in-place step in "sgd" mode."""
    kw = dict(conditioned_on=conditioned, update=update)
    if update == "sgd":
        kw.update(lr=0.1, lr_sg=0.05)
    cpu = make_mlp(torch.float64, **kw)
    gpu = make_mlp(torch.float32, backend=backend, **kw).cuda()
    gpu.load_state_dict(cpu.state_dict())
    assert gpu.fused, "the GPU model must take the fused kernels"
    opts = [torch.optim.SGD(m.parameters() if update == "grads" else m.head.parameters(),
                            lr=0.1, momentum=0.9) for m in (cpu, gpu)]  # fmt: skip
    for x, y in batches(STEPS, torch.float64):
        for model, opt, dev, dtype in ((cpu, opts[0], "cpu", torch.float64),
                                       (gpu, opts[1], "cuda", torch.float32)):  # fmt: skip
            opt.zero_grad()
            loss = F.cross_entropy(model(x.to(dev, dtype), labels=y.to(dev)), y.to(dev))
            loss.backward()
            opt.step()
        assert_close(torch.stack(gpu.sg_losses()).cpu(), torch.stack(cpu.sg_losses()).float(),
                     "sg_losses")  # fmt: skip
    _assert_params_close(gpu, cpu)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reads_cell,aux", [(False, False), (True, True)])
def test_dnilstm_on_gpu_trains_like_cpu(backend, reads_cell, aux, monkeypatch):
    """Three windows of one sequence (the last one without bootstrap), the state carried
    on the GPU between them, Adam steps on every parameter, the SG heads included."""
    torch.manual_seed(0)
    cpu = DNILSTM(6, 37, sg_reads_cell=reads_cell, aux=aux, sg_scale=0.5, dtype=torch.float64)
    with torch.no_grad():  # non-zero SG heads, so the bootstrap and regression matter
        for p in cpu.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    gpu = copy.deepcopy(cpu).float().cuda()
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (cpu, gpu)]
    gen = torch.Generator().manual_seed(1)
    for k in range(3):
        x = torch.randn(5, 9, 6, generator=gen, dtype=torch.float64)
        y = torch.randn(5, 9, 37, generator=gen, dtype=torch.float64)
        outs = []
        for model, opt, dev, dtype in ((cpu, opts[0], "cpu", torch.float64),
                                       (gpu, opts[1], "cuda", torch.float32)):  # fmt: skip
            monkeypatch.setenv("DNI_BACKEND", backend if model is gpu else "auto")
            opt.zero_grad()
            out, state = model(x.to(dev, dtype), last_window=k == 2)
            loss = 0.5 * ((out - y.to(dev, dtype)) ** 2).sum()
            loss.backward()
            opt.step()
            outs.append((out.detach(), state))
        (out_c, state_c), (out_g, state_g) = outs
        assert all(s.is_cuda for s in state_g)
        assert_close(out_g.cpu(), out_c.float(), f"out {k}")
        assert_close(state_g[1].cpu(), state_c[1].float(), f"c_T {k}")
        _assert_params_close(gpu, cpu)
