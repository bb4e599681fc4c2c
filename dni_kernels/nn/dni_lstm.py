"""DNILSTM: an LSTM layer trained by truncated BPTT whose window boundaries are
bridged by synthetic gradients (paper §2.2, §3.1; math in dni_kernels/reference.py).

    model = DNILSTM(input_size, hidden_size)
    for x_window, y_window in windows(sequence):        # x_window [T, B, input_size]
        out, state = model(x_window)                      # state carried, detached
        loss(out, y_window).backward()                    # bootstrap + SG regression inside
        optimizer.step(); optimizer.zero_grad()
    model.reset_state()                                   # at the sequence's end

One call is one fused op (dni::lstm_dni_window): the window forward plus both SG
predictions; its backward bootstraps from ĝ_end = sg_scale·M(s_end), produces
δ_start and gives the synthesizer (and the optional aux head) the gradients of their
regressions, so any torch.optim optimizer trains everything from .grad.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .. import ops
from .recompute import recomputing
from .synthesizers import LinearSynthesizer


class DNILSTM(nn.Module):
    """One LSTM layer, time-major like ``nn.LSTM`` (x [T, B, input_size]), or with
    ``batch_first=True`` batch-major (x [B, T, input_size], out [B, T, H]).

    sg_reads_cell: the synthesizer reads (h, c) and predicts the gradient of both
        (F = 2H); otherwise it reads h only (F = H) and c gets no boundary gradient.
    sg_scale: ĝ_end = sg_scale · M(s_end) (0.1, the default, in the paper's RNN
        experiments; on the delayed-recall task of dni_kernels/recall.py 0.3 did far
        better, 98–99 % against 63–64 %, and 0.5 diverged: worth tuning).
    aux: adds the "DNI + Aux" head M_aux(s_start) → ĝ_end, weighted by aux_loss_weight.

    Parameters: ``weight_ih`` [4H, I], ``weight_hh`` [4H, H], ``bias`` [4H] (nn.LSTM's
    b_ih + b_hh), ``synthesizer`` and ``aux_synthesizer`` (zero-initialised, so the
    first windows train like plain truncated BPTT).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 batch_first: bool = False, sg_reads_cell: bool = False, sg_scale: float = 0.1,
                 aux: bool = False, aux_loss_weight: float = 1.0, device=None, dtype=None):  # fmt: skip
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got "
                             f"{input_size} and {hidden_size}")  # fmt: skip
        if not math.isfinite(sg_scale):
            raise ValueError(f"sg_scale must be finite, got {sg_scale}")
        if not (math.isfinite(aux_loss_weight) and aux_loss_weight >= 0):
            raise ValueError(f"aux_loss_weight must be finite and >= 0, got {aux_loss_weight}")
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.batch_first = batch_first
        self.sg_reads_cell, self.sg_scale = sg_reads_cell, float(sg_scale)
        self.aux_loss_weight = float(aux_loss_weight)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **factory))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size, **factory)) if bias else None
        features = 2 * hidden_size if sg_reads_cell else hidden_size
        self.synthesizer = LinearSynthesizer(features).to(**factory)
        self.aux_synthesizer = LinearSynthesizer(features).to(**factory) if aux else None
        self.state: Optional[tuple[Tensor, Tensor]] = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.LSTM's initialisation: U(−1/√H, 1/√H) for the LSTM weights."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def reset_state(self) -> None:
        """Forget the carried state: the next window starts from zeros."""
        self.state = None

    def forward(self, x: Tensor, state: Optional[tuple[Tensor, Tensor]] = None, *,
                last_window: bool = False) -> tuple[Tensor, tuple[Tensor, Tensor]]:  # fmt: skip
        """One window. ``state`` (h, c) [B, H] defaults to the carried state (zeros
        after ``reset_state``). ``last_window=True`` ends the sequence: no bootstrap.
        Returns ``(out [T, B, H], (h_T, c_T))`` ([B, T, H] with batch_first); the state
        is carried and detached.
        Under torch.utils.checkpoint pass ``state`` explicitly: by the time the window
        is recomputed, the carried state has moved on (the recomputation leaves it).
        After windows run under torch.inference_mode, call ``reset_state()`` (or pass
        ``state``) before a compiled training step: the carried state then holds
        inference tensors, which eager mode converts but compiled code cannot take."""
        if x.dim() != 3:
            layout = "[batch, steps, input_size]" if self.batch_first else "[steps, batch, input_size]"
            raise ValueError(f"x must be {layout}, got shape {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)  # a view; the op reads any strides
        if torch.is_autocast_enabled(x.device.type) and x.dtype != self.weight_ih.dtype:
            x = x.to(self.weight_ih.dtype)  # as DNILinear: the layer runs in its dtype
        if state is None:
            if recomputing():
                raise RuntimeError("DNILSTM under torch.utils.checkpoint: pass the window's "
                                   "start state explicitly (model(x, state)); the carried "
                                   "state has moved on when the window is recomputed")  # fmt: skip
            state = self._carried_state(x)
        h0, c0 = state[0].detach(), state[1].detach()
        aux = self.aux_synthesizer
        hs, cs, _ = ops.lstm_dni_window(
            x, h0, c0, self.weight_ih, self.weight_hh, self.bias,
            self.synthesizer.weight, self.synthesizer.bias,
            aux.weight if aux is not None else None, aux.bias if aux is not None else None,
            sg_scale=self.sg_scale, sg_reads_cell=self.sg_reads_cell,
            bootstrap=not last_window, aux_loss_weight=self.aux_loss_weight,
        )  # fmt: skip
        end = (hs[-1].detach(), cs[-1].detach())
        if not recomputing():  # assigned only after the op accepted its input
            self.state = end
        return (hs.transpose(0, 1) if self.batch_first else hs), end

    def _carried_state(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The carried (h, c) for the window x, zeros after reset_state(): in x's dtype
        and device (the model may have moved since), and an ordinary tensor when it was
        made under torch.inference_mode and training goes on outside it."""
        if self.state is None:
            zeros = x.new_zeros(x.shape[1], self.hidden_size)
            return zeros, zeros
        h, c = self.state
        if h.shape[0] != x.shape[1]:
            raise ValueError(f"x has batch {x.shape[1]} but the carried state has batch "
                             f"{h.shape[0]}: call reset_state() at a sequence's end, or "
                             f"pass state=")  # fmt: skip
        # (torch.compile cannot trace is_inference(); a compiled step cannot take
        # inference tensors either way.)
        tracing = torch.compiler.is_compiling()
        if not tracing and not torch.is_inference_mode_enabled() and h.is_inference():
            h, c = h.clone(), c.clone()
        return h.to(x), c.to(x)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, bias={self.bias is not None}, "
                f"batch_first={self.batch_first}, sg_reads_cell={self.sg_reads_cell}, "
                f"sg_scale={self.sg_scale}, aux={self.aux_synthesizer is not None}")  # fmt: skip
