// Grow-only scratch buffers for a CPU kernel's internal temporaries.
//
// A fresh large tensor costs a page fault per 4 KiB on every call (glibc serves and
// returns blocks above its mmap threshold, at most 32 MiB, straight from the kernel):
// about 0.5 ms per MB on this project's development machine, 20% of an LSTM window's
// backward at T=40, B=256, H=256. One buffer per thread and slot is kept instead and
// reused while large enough. A kernel must not hand a workspace view back to its
// caller, and two live temporaries of one call need two slots.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

namespace dni::cpu {

enum class WorkspaceSlot : int {
  kLstmGateGrads = 0,
  kLstmGateGradsByUnit = 1,
  kLstmHiddenPrev = 2,
  kCount = 3
};

inline at::Tensor workspace(WorkspaceSlot slot, at::IntArrayRef sizes,
                            const at::TensorOptions& options) {
  thread_local at::Tensor buffers[static_cast<int>(WorkspaceSlot::kCount)];
  at::Tensor& buffer = buffers[static_cast<int>(slot)];
  const int64_t numel = c10::multiply_integers(sizes);
  if (!buffer.defined() || buffer.scalar_type() != options.dtype().toScalarType() ||
      buffer.numel() < numel) {
    buffer = at::Tensor();  // release the old block before taking the new one
    buffer = at::empty({numel}, options);
  }
  return buffer.narrow(0, 0, numel).view(sizes);
}

}  // namespace dni::cpu
