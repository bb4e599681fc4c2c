#include "lstm_window_steps.h"

#include <cstring>
#include <string>

#include "dni/settings.h"

#include "lstm_window_step_avx2.h"
#include "lstm_window_step_avx512.h"

namespace dni::cpu {

namespace {

constexpr LstmWindowSteps kAvx512{lstm_pack_forward_weight,
                                  kLstmStepUnitBlock,
                                  lstm_window_forward_step_avx512,
                                  lstm_window_backward_step_avx512,
                                  lstm_window_recurrent_grad_avx512};

constexpr LstmWindowSteps kAvx2{lstm_pack_forward_weight_avx2,
                                kLstmStepUnitBlockAvx2,
                                lstm_window_forward_step_avx2,
                                lstm_window_backward_step_avx2,
                                lstm_window_recurrent_grad_avx2};

}  // namespace

at::Tensor lstm_pack_unit_blocks(const at::Tensor& w_hh, int64_t block) {
  const at::Tensor w = w_hh.contiguous();
  const int64_t hidden = w.size(1), blocks = hidden / block;
  // packed[p][k][l] = W_hh[k][block·p + l]: each row of W_hh read once, in runs of
  // `block` floats. A plain loop: torch's permuted copy with 16-float runs took 0.11 ms
  // at H = 256 and 12 ms at H = 1024 on a Zen 3, against a window's 9–140 ms.
  at::Tensor packed = at::empty({blocks, 4 * hidden, block}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, 4 * hidden, 64, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      for (int64_t p = 0; p < blocks; ++p) {
        std::memcpy(dst + (p * 4 * hidden + k) * block, src + k * hidden + p * block,
                    block * sizeof(float));
      }
    }
  });
  return packed;
}

namespace {

// Auto takes the AVX2 steps up to this many multiply-adds per step product (B·4H·H).
// Measured on a 2-core Zen 3 against the portable path (whole DNI window, bench_lstm.py's
// fused column with DNI_CPU_LSTM_STEP=avx2 and =loop; the machine's speed swings by a
// third). With both paths' whole-window products on oneDNN, the AVX2 steps won at 2²³
// (B = 32, H = 256: 0.80–0.93 in two full benchmark runs) but not above (0.98–1.04 from
// 2²⁶ to 2³⁰, alternating in one process), so the cut was 2²⁵. Since those products go
// to MKL on such a CPU (dense_linear.cpp), which sped up the AVX2 path's unit-major
// weight gradients the most, the AVX2 steps took 0.76–0.99 (best) and 0.83–1.02
// (median) of the portable path's time, alternating in one process over three or four
// rounds, at nine sizes from 2²³ to 2³⁰ (T = 8 and 40, B = 32–256, H = 256–1024;
// 2026-11-23; see benchmarks/lstm_cpu_notes.md). Above 2³⁰ (unmeasured) auto keeps the
// loop: there the per-step library products approach full rate, and the AVX2 tiles do
// not block K.
constexpr int64_t kAvx2MaxStepMacs = int64_t{1} << 30;

}  // namespace

const LstmWindowSteps* lstm_window_steps(const at::Tensor& w_hh, int64_t batch) {
  const std::string mode = env_setting("DNI_CPU_LSTM_STEP", {"avx512", "avx2", "loop"});
  if (mode == "auto") {
    if (lstm_window_step_avx512_supported(w_hh)) return &kAvx512;
    const int64_t hidden = w_hh.size(1);
    return lstm_window_step_avx2_supported(w_hh) && batch * 4 * hidden * hidden <= kAvx2MaxStepMacs
               ? &kAvx2
               : nullptr;
  }
  if (mode == "loop") return nullptr;
  const bool avx512 = mode == "avx512";
  TORCH_CHECK(avx512 ? lstm_window_step_avx512_supported(w_hh)
                     : lstm_window_step_avx2_supported(w_hh),
              "dni: DNI_CPU_LSTM_STEP=", mode, " but this CPU or w_hh cannot take those steps "
              "(they need the ISA, float32, and the hidden size a multiple of ",
              avx512 ? kLstmStepUnitBlock : kLstmStepUnitBlockAvx2, "; got ",
              w_hh.scalar_type(), ", hidden size ", w_hh.size(1), ")");
  return avx512 ? &kAvx512 : &kAvx2;
}

}  // namespace dni::cpu
