#include "lstm_window_steps.h"

#include <cstdlib>
#include <string>

#include "lstm_window_step_avx2.h"
#include "lstm_window_step_avx512.h"

namespace dni::cpu {

namespace {

constexpr LstmWindowSteps kAvx512{"avx512",
                                  lstm_pack_forward_weight,
                                  lstm_pack_backward_weight,
                                  lstm_window_forward_step_avx512,
                                  lstm_window_backward_step_avx512,
                                  lstm_window_recurrent_grad_avx512};

constexpr LstmWindowSteps kAvx2{"avx2",
                                lstm_pack_forward_weight_avx2,
                                lstm_pack_backward_weight_avx2,
                                lstm_window_forward_step_avx2,
                                lstm_window_backward_step_avx2,
                                lstm_window_recurrent_grad_avx2};

}  // namespace

const LstmWindowSteps* lstm_window_steps(const at::Tensor& w_hh) {
  const char* env = std::getenv("DNI_CPU_LSTM_STEP");
  const std::string mode = env != nullptr && *env != '\0' ? env : "auto";
  if (mode == "auto") {
    if (lstm_window_step_avx512_supported(w_hh)) return &kAvx512;
    return lstm_window_step_avx2_supported(w_hh) ? &kAvx2 : nullptr;
  }
  if (mode == "loop") return nullptr;
  TORCH_CHECK(mode == "avx512" || mode == "avx2",
              "dni: DNI_CPU_LSTM_STEP must be auto, avx512, avx2 or loop, got '", mode, "'");
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
