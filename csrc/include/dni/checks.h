// Argument validation shared by every backend. Every check runs before any kernel
// writes, so an op that refuses its input leaves the weights byte-identical.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <string>

#include "dni/math.h"

namespace dni {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

Activation parse_activation(const std::string& name);

// A finite scalar; `nonnegative` for learning rates.
void check_scalar(double value, const char* name, bool nonnegative);

// Dtype policy: on CPU, activations and parameters share one dtype (float32 or
// float64). On CUDA, activations may be float16/bfloat16 with float32 parameters
// ("master weights") or the same dtype as the parameters.
struct DtypePolicy {
  bool allow_half_activations;
};

// An input an op only reads (x, h, sg_raw, target, labels and the prev_* ones) may not
// share memory with a tensor it updates in place: what the kernel reads would depend
// on the order of its writes. Updated tensors may alias one another (a synthesizer
// shared by two layers): they are applied in the reference's order. Each check below
// refuses such an overlap, naming both arguments, and an updated tensor made under
// torch.inference_mode while outside it.

// The SG regression group: [B, F] activations h and sg_raw, parameters A [F, F],
// a [F], C [K, F] with labels [B], and optional .grad buffers ("grads" mode).
struct SgGroup {
  const Tensor& h;
  const Tensor& sg_raw;
  const OptTensor& labels;
  const Tensor& sg_weight;
  const OptTensor& sg_bias;
  const OptTensor& sg_table;
  const OptTensor& sg_weight_grad;
  const OptTensor& sg_bias_grad;
  const OptTensor& sg_table_grad;
};

// `prefix` names the group in messages ("" for sg_update, "prev_" inside linear_step).
// `target` is the regression target [B, F] (for linear_step's chain it is grad_x,
// which the op creates itself, so pass nullptr). `check_label_values` reads the
// labels to range-check them (a host sync on CUDA).
void check_sg_group(const SgGroup& g, const char* prefix, const Tensor* target,
                    double lr, const DtypePolicy& policy, bool check_label_values);

// linear_step's optional prev_* group (the lower layer's SG, regressed toward this
// step's grad_x): prev_h, prev_sg_raw and prev_sg_weight come together or not at all,
// and only with compute_grad_x (the regression's target is grad_x); prev_h has x's
// shape and prev_sg_weight weight's dtype; neither side's read-only inputs share
// memory with the other side's updated tensors. Returns the checked group (referring
// to the arguments), or nullopt when the step is not chained.
std::optional<SgGroup> check_prev_group(
    const Tensor& x, const Tensor& weight, const OptTensor& bias,
    const OptTensor& weight_grad, const OptTensor& bias_grad, const OptTensor& prev_h,
    const OptTensor& prev_sg_raw, const OptTensor& prev_labels,
    const OptTensor& prev_sg_weight, const OptTensor& prev_sg_bias,
    const OptTensor& prev_sg_table, const OptTensor& prev_sg_weight_grad,
    const OptTensor& prev_sg_bias_grad, const OptTensor& prev_sg_table_grad,
    double prev_lr, bool compute_grad_x, const DtypePolicy& policy,
    bool check_label_values);

void check_linear_step(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                       const OptTensor& weight_grad, const OptTensor& bias_grad,
                       const Tensor& sg_weight, const OptTensor& sg_bias,
                       const OptTensor& sg_table, const OptTensor& labels,
                       double sg_scale, double lr, const DtypePolicy& policy,
                       bool check_label_values);

}  // namespace dni
