#include "dni/checks.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <utility>
#include <vector>

namespace dni {
namespace {

std::string full(const char* prefix, const char* name) {
  return std::string(prefix) + name;
}

bool is_half(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16;
}

struct Named {
  std::string name;
  const Tensor* tensor;  // null or undefined: absent
};

Named named(std::string name, const OptTensor& t) {
  return {std::move(name), t.has_value() ? &*t : nullptr};
}

// The bytes from a view's first element to the end of its last (strides are never
// negative in PyTorch).
std::pair<const char*, const char*> extent(const Tensor& t) {
  const char* begin = static_cast<const char*>(t.const_data_ptr());
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return {begin, begin + (last + 1) * t.element_size()};
}

// Whether any element of the strided view `t` lies in the bytes [lo, hi).
bool any_element_in(const Tensor& t, const char* lo, const char* hi) {
  const char* base = static_cast<const char*>(t.const_data_ptr());
  const int64_t size = t.element_size(), dims = t.dim();
  std::vector<int64_t> index(dims, 0);
  for (int64_t n = 0; n < t.numel(); ++n) {
    int64_t offset = 0;
    for (int64_t d = 0; d < dims; ++d) offset += index[d] * t.stride(d);
    const char* p = base + offset * size;
    if (p < hi && p + size > lo) return true;
    for (int64_t d = dims - 1; d >= 0 && ++index[d] == t.size(d); --d) index[d] = 0;
  }
  return false;
}

// Whether `read` and `write` reach a common byte. Their extents decide, except for a
// strided read beside a contiguous write (views carved from one buffer that
// interleave): then the read's elements are walked, which only such layouts pay for.
bool shares_memory(const Tensor& read, const Tensor& write) {
  if (read.numel() == 0 || write.numel() == 0 || !read.has_storage() ||
      !write.has_storage() || !read.storage().is_alias_of(write.storage())) {
    return false;
  }
  const auto [r0, r1] = extent(read);
  const auto [w0, w1] = extent(write);
  if (!(r0 < w1 && w0 < r1)) return false;
  if (read.is_contiguous() || !write.is_contiguous()) return true;
  return any_element_in(read, w0, w1);
}

// See checks.h: read-only inputs may not overlap the tensors an op updates. And, as
// PyTorch's own in-place ops require, a tensor made under torch.inference_mode is
// updated only inside it (the Triton kernels write through raw pointers, which
// PyTorch cannot check).
void check_updates(const std::vector<Named>& reads, const std::vector<Named>& writes) {
  for (const Named& w : writes) {
    TORCH_CHECK(w.tensor == nullptr || !w.tensor->defined() || !w.tensor->is_inference() ||
                    c10::InferenceMode::is_enabled(),
                "dni: ", w.name, " was made under torch.inference_mode; it can be updated in "
                "place only inside inference_mode (clone it outside to train it)");
  }
  for (const Named& r : reads) {
    if (r.tensor == nullptr || !r.tensor->defined()) continue;
    for (const Named& w : writes) {
      if (w.tensor == nullptr || !w.tensor->defined()) continue;
      TORCH_CHECK(!shares_memory(*r.tensor, *w.tensor), "dni: ", r.name,
                  " shares memory with ", w.name, ", which the op updates in place; pass ",
                  r.name, " as a copy (", r.name, ".clone())");
    }
  }
}

// What an SG group's regression updates: the parameters, or in "grads" mode their
// .grad buffers (the parameters are then only read).
std::vector<Named> sg_group_writes(const SgGroup& g, const char* prefix) {
  if (g.sg_weight_grad.has_value()) {
    return {named(full(prefix, "sg_weight_grad"), g.sg_weight_grad),
            named(full(prefix, "sg_bias_grad"), g.sg_bias_grad),
            named(full(prefix, "sg_table_grad"), g.sg_table_grad)};
  }
  return {{full(prefix, "sg_weight"), &g.sg_weight}, named(full(prefix, "sg_bias"), g.sg_bias),
          named(full(prefix, "sg_table"), g.sg_table)};
}

// What linear_step updates of its own layer: W and b, or their .grad buffers.
std::vector<Named> layer_writes(const Tensor& weight, const OptTensor& bias,
                                const OptTensor& weight_grad, const OptTensor& bias_grad) {
  if (weight_grad.has_value()) {
    return {named("weight_grad", weight_grad), named("bias_grad", bias_grad)};
  }
  return {{"weight", &weight}, named("bias", bias)};
}

void check_activation_dtype(const Tensor& t, const std::string& name,
                            const DtypePolicy& policy) {
  auto dt = t.scalar_type();
  bool ok = dt == at::kFloat || dt == at::kDouble ||
            (policy.allow_half_activations && is_half(dt));
  TORCH_CHECK(ok, "dni: ", name, " must be ",
              policy.allow_half_activations ? "float16, bfloat16, float32 or float64"
                                            : "float32 or float64 on CPU",
              ", got ", dt);
}

// Parameters and their .grad buffers: the parameter dtype, contiguous, on x's device.
void check_param(const Tensor& t, const std::string& name, at::IntArrayRef shape,
                 const Tensor& like_param, const Tensor& like_act,
                 const DtypePolicy& policy) {
  TORCH_CHECK(t.device() == like_act.device(), "dni: ", name, " is on ", t.device(),
              " but the input is on ", like_act.device());
  TORCH_CHECK(t.sizes() == shape, "dni: ", name, " must have shape ", shape, ", got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == like_param.scalar_type(), "dni: ", name,
              " must have dtype ", like_param.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), "dni: ", name,
              " must be contiguous (it is updated in place)");
  auto act = like_act.scalar_type();
  bool dtype_ok = t.scalar_type() == act ||
                  (policy.allow_half_activations && is_half(act) &&
                   t.scalar_type() == at::kFloat);
  TORCH_CHECK(dtype_ok, "dni: ", name, " has dtype ", t.scalar_type(),
              " which does not match the activations' dtype ", act);
}

void check_activation(const Tensor& t, const std::string& name, at::IntArrayRef shape,
                      const Tensor& like, const DtypePolicy& policy) {
  TORCH_CHECK(t.device() == like.device(), "dni: ", name, " is on ", t.device(),
              " but the input is on ", like.device());
  TORCH_CHECK(t.sizes() == shape, "dni: ", name, " must have shape ", shape, ", got ",
              t.sizes());
  check_activation_dtype(t, name, policy);
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "dni: ", name, " must have dtype ",
              like.scalar_type(), ", got ", t.scalar_type());
}

void check_labels(const OptTensor& labels, const OptTensor& table, const std::string& name,
                  const std::string& table_name, int64_t batch, const Tensor& like,
                  bool check_values) {
  if (!table.has_value()) {
    TORCH_CHECK(!labels.has_value(), "dni: ", name, " given without ", table_name,
                " (labels only index the class table of conditional DNI)");
    return;
  }
  TORCH_CHECK(labels.has_value(), "dni: ", table_name, " given without ", name);
  const Tensor& y = *labels;
  TORCH_CHECK(y.device() == like.device(), "dni: ", name, " is on ", y.device(),
              " but the input is on ", like.device());
  TORCH_CHECK(y.scalar_type() == at::kLong, "dni: ", name, " must be int64, got ",
              y.scalar_type());
  TORCH_CHECK(y.dim() == 1 && y.size(0) == batch, "dni: ", name, " must have shape [",
              batch, "], got ", y.sizes());
  if (check_values && batch > 0) {
    int64_t k = table->size(0);
    auto [lo, hi] = at::aminmax(y);
    int64_t lo_v = lo.item<int64_t>(), hi_v = hi.item<int64_t>();
    TORCH_CHECK(lo_v >= 0 && hi_v < k, "dni: ", name, " must lie in [0, ", k,
                ") (the rows of ", table_name, "), got values in [", lo_v, ", ", hi_v,
                "]");
  }
}

// Optional parameter with its optional .grad buffer in "grads" mode.
void check_optional_param(const OptTensor& p, const OptTensor& p_grad, bool grads_mode,
                          const std::string& name, at::IntArrayRef shape,
                          const Tensor& like_param, const Tensor& like_act,
                          const DtypePolicy& policy) {
  if (!p.has_value()) {
    TORCH_CHECK(!p_grad.has_value(), "dni: ", name, "_grad given without ", name);
    return;
  }
  check_param(*p, name, shape, like_param, like_act, policy);
  if (grads_mode) {
    TORCH_CHECK(p_grad.has_value(), "dni: grads mode (weight grad given) needs ", name,
                "_grad too");
    check_param(*p_grad, name + "_grad", shape, like_param, like_act, policy);
  } else {
    TORCH_CHECK(!p_grad.has_value(), "dni: ", name,
                "_grad given but the weight's grad is not (grads mode is all or none)");
  }
}

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "identity") return Activation::kIdentity;
  if (name == "relu") return Activation::kRelu;
  if (name == "tanh") return Activation::kTanh;
  if (name == "sigmoid") return Activation::kSigmoid;
  TORCH_CHECK(false, "dni: activation must be one of identity, relu, tanh, sigmoid; got '",
              name, "'");
}

void check_scalar(double value, const char* name, bool nonnegative) {
  TORCH_CHECK(std::isfinite(value), "dni: ", name, " must be finite, got ", value);
  TORCH_CHECK(!nonnegative || value >= 0, "dni: ", name, " must be >= 0, got ", value);
}

void check_sg_group(const SgGroup& g, const char* prefix, const Tensor* target,
                    double lr, const DtypePolicy& policy, bool check_label_values) {
  check_scalar(lr, prefix[0] ? "prev_lr" : "lr", /*nonnegative=*/true);
  const Tensor& h = g.h;
  TORCH_CHECK(h.dim() == 2, "dni: ", full(prefix, "h"), " must be 2-D [batch, features], got ",
              h.sizes());
  check_activation_dtype(h, full(prefix, "h"), policy);
  int64_t batch = h.size(0), feat = h.size(1);
  check_activation(g.sg_raw, full(prefix, "sg_raw"), {batch, feat}, h, policy);
  if (target != nullptr) {
    check_activation(*target, "target", {batch, feat}, h, policy);
  }
  const Tensor& A = g.sg_weight;
  check_param(A, full(prefix, "sg_weight"), {feat, feat}, A, h, policy);
  bool grads_mode = g.sg_weight_grad.has_value();
  if (grads_mode) {
    check_param(*g.sg_weight_grad, full(prefix, "sg_weight_grad"), {feat, feat}, A, h,
                policy);
  }
  check_optional_param(g.sg_bias, g.sg_bias_grad, grads_mode, full(prefix, "sg_bias"),
                       {feat}, A, h, policy);
  if (g.sg_table.has_value()) {
    TORCH_CHECK(g.sg_table->dim() == 2 && g.sg_table->size(1) == feat, "dni: ",
                full(prefix, "sg_table"), " must have shape [num_classes, ", feat,
                "], got ", g.sg_table->sizes());
    TORCH_CHECK(g.sg_table->size(0) > 0, "dni: ", full(prefix, "sg_table"),
                " needs at least one class");
  }
  int64_t k = g.sg_table.has_value() ? g.sg_table->size(0) : 0;
  check_optional_param(g.sg_table, g.sg_table_grad, grads_mode, full(prefix, "sg_table"),
                       {k, feat}, A, h, policy);
  check_labels(g.labels, g.sg_table, full(prefix, "labels"), full(prefix, "sg_table"),
               batch, h, check_label_values);
  check_updates({{full(prefix, "h"), &h}, {full(prefix, "sg_raw"), &g.sg_raw},
                 {"target", target}, named(full(prefix, "labels"), g.labels)},
                sg_group_writes(g, prefix));
}

void check_linear_step(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                       const OptTensor& weight_grad, const OptTensor& bias_grad,
                       const Tensor& sg_weight, const OptTensor& sg_bias,
                       const OptTensor& sg_table, const OptTensor& labels,
                       double sg_scale, double lr, const DtypePolicy& policy,
                       bool check_label_values) {
  check_scalar(lr, "lr", /*nonnegative=*/true);
  check_scalar(sg_scale, "sg_scale", /*nonnegative=*/false);
  TORCH_CHECK(x.dim() == 2, "dni: x must be 2-D [batch, in_features], got ", x.sizes());
  check_activation_dtype(x, "x", policy);
  TORCH_CHECK(weight.dim() == 2, "dni: weight must be 2-D [out_features, in_features], got ",
              weight.sizes());
  int64_t in = x.size(1), out = weight.size(0);
  TORCH_CHECK(weight.size(1) == in, "dni: weight must have shape [out_features, ", in,
              "] to match x [", x.size(0), ", ", in, "], got ", weight.sizes());
  check_param(weight, "weight", {out, in}, weight, x, policy);
  bool grads_mode = weight_grad.has_value();
  if (grads_mode) {
    check_param(*weight_grad, "weight_grad", {out, in}, weight, x, policy);
  }
  check_optional_param(bias, bias_grad, grads_mode, "bias", {out}, weight, x, policy);
  check_param(sg_weight, "sg_weight", {out, out}, weight, x, policy);
  if (sg_bias.has_value()) check_param(*sg_bias, "sg_bias", {out}, weight, x, policy);
  if (sg_table.has_value()) {
    TORCH_CHECK(sg_table->dim() == 2 && sg_table->size(1) == out && sg_table->size(0) > 0,
                "dni: sg_table must have shape [num_classes >= 1, ", out, "], got ",
                sg_table->sizes());
    check_param(*sg_table, "sg_table", sg_table->sizes(), weight, x, policy);
  }
  check_labels(labels, sg_table, "labels", "sg_table", x.size(0), x, check_label_values);
  check_updates({{"x", &x}, named("labels", labels)},
                layer_writes(weight, bias, weight_grad, bias_grad));
}

std::optional<SgGroup> check_prev_group(
    const Tensor& x, const Tensor& weight, const OptTensor& bias,
    const OptTensor& weight_grad, const OptTensor& bias_grad, const OptTensor& prev_h,
    const OptTensor& prev_sg_raw, const OptTensor& prev_labels,
    const OptTensor& prev_sg_weight, const OptTensor& prev_sg_bias,
    const OptTensor& prev_sg_table, const OptTensor& prev_sg_weight_grad,
    const OptTensor& prev_sg_bias_grad, const OptTensor& prev_sg_table_grad,
    double prev_lr, bool compute_grad_x, const DtypePolicy& policy,
    bool check_label_values) {
  const bool chained = prev_sg_weight.has_value();
  TORCH_CHECK(chained == prev_h.has_value() && chained == prev_sg_raw.has_value(),
              "dni: prev_h, prev_sg_raw and prev_sg_weight come together (the previous "
              "layer's SG regression) or not at all");
  if (!chained) return std::nullopt;
  TORCH_CHECK(compute_grad_x,
              "dni: compute_grad_x=False with the prev_* group: the previous layer's SG "
              "regresses toward grad_x, so it must be computed (drop prev_* or pass "
              "compute_grad_x=True)");
  SgGroup prev{*prev_h,        *prev_sg_raw,        prev_labels,
               *prev_sg_weight, prev_sg_bias,        prev_sg_table,
               prev_sg_weight_grad, prev_sg_bias_grad, prev_sg_table_grad};
  TORCH_CHECK(prev_h->sizes() == x.sizes(), "dni: prev_h must have x's shape ", x.sizes(),
              " (the previous layer's output is this layer's input), got ",
              prev_h->sizes());
  // Kernels read prev_h and prev_sg_raw as x's dtype (with half activations the
  // parameter checks alone would let a float16 x pass with a bfloat16 prev_h).
  TORCH_CHECK(prev_h->scalar_type() == x.scalar_type(), "dni: prev_h must have x's dtype ",
              x.scalar_type(), ", got ", prev_h->scalar_type());
  check_sg_group(prev, "prev_", nullptr, prev_lr, policy, check_label_values);
  TORCH_CHECK(prev_sg_weight->scalar_type() == weight.scalar_type(),
              "dni: prev_sg_weight must have dtype ", weight.scalar_type(), ", got ",
              prev_sg_weight->scalar_type());
  // Across the two sides (each side's own pairs are checked with it).
  check_updates({{"x", &x}}, sg_group_writes(prev, "prev_"));
  check_updates(
      {{"prev_h", &*prev_h}, {"prev_sg_raw", &*prev_sg_raw}, named("prev_labels", prev_labels)},
      layer_writes(weight, bias, weight_grad, bias_grad));
  return prev;
}

}  // namespace dni
