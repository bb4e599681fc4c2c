// Shared by the CPU LSTM kernels (csrc/cpu/lstm_window_*.cpp).
#pragma once

#include <algorithm>
#include <cstdint>

namespace dni::cpu {

// Batch rows of a [B, H] gate loop per parallel task: about 4096 units per task,
// enough work to amortise the fork on small batches.
inline int64_t lstm_row_grain(int64_t hidden) {
  return std::max<int64_t>(1, 4096 / std::max<int64_t>(hidden, 1));
}

}  // namespace dni::cpu
