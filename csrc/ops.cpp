// Every dni op's schema, declared once. Backends register kernels with
// TORCH_LIBRARY_IMPL(dni, CPU|CUDA, m); fake kernels and autograd live in Python
// (dni_kernels/ops.py). Arguments an op updates in place carry (x!) and are not
// returned.
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <string>

// Importing dni_kernels._C loads this library, which runs the registrations below.
// The module itself is empty: every entry point is a torch.ops.dni op. (The CMake
// build, a plain C++ library for C++ users, has no Python module.)
#ifdef TORCH_EXTENSION_NAME
#include <Python.h>
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1,
                                          nullptr};
  return PyModule_Create(&module_def);
}
}
#endif

// Argument lists shared by an op and its Triton twin (`<op>_triton`, whose kernels
// are registered from Python in dni_kernels/triton/), so both have one schema.
namespace {
constexpr const char* kLinearStepArgs =
    "(Tensor x, Tensor(a!) weight, Tensor(b!)? bias, "
    "Tensor(c!)? weight_grad, Tensor(d!)? bias_grad, "
    "Tensor sg_weight, Tensor? sg_bias, Tensor? sg_table, Tensor? labels, "
    "str activation, float sg_scale, float lr, "
    "Tensor? prev_h, Tensor? prev_sg_raw, Tensor? prev_labels, "
    "Tensor(e!)? prev_sg_weight, Tensor(f!)? prev_sg_bias, Tensor(g!)? prev_sg_table, "
    "Tensor(h!)? prev_sg_weight_grad, Tensor(i!)? prev_sg_bias_grad, "
    "Tensor(j!)? prev_sg_table_grad, float prev_lr, bool compute_grad_x=True) "
    "-> (Tensor h, Tensor sg_raw, Tensor grad_x, Tensor prev_loss)";

constexpr const char* kSgUpdateArgs =
    "(Tensor h, Tensor sg_raw, Tensor target, Tensor? labels, "
    "Tensor(a!) sg_weight, Tensor(b!)? sg_bias, Tensor(c!)? sg_table, "
    "Tensor(d!)? sg_weight_grad, Tensor(e!)? sg_bias_grad, Tensor(f!)? sg_table_grad, "
    "float lr) -> Tensor loss";
constexpr const char* kLstmWindowForwardArgs =
    "(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? bias) "
    "-> (Tensor hs, Tensor cs, Tensor gates)";

constexpr const char* kLstmWindowBackwardArgs =
    "(Tensor? grad_hs, Tensor? grad_cs, Tensor? grad_h_end, Tensor? grad_c_end, "
    "Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, "
    "Tensor hs, Tensor cs, Tensor gates, bool compute_grad_x=True) -> (Tensor grad_x, "
    "Tensor grad_h0, "
    "Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias)";
constexpr const char* kLstmDniWindowArgs =
    "(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? bias, "
    "Tensor sg_weight, Tensor? sg_bias, Tensor? aux_weight, Tensor? aux_bias, "
    "float sg_scale, bool sg_reads_cell, bool bootstrap, float aux_loss_weight) "
    "-> (Tensor hs, Tensor cs, Tensor gates, Tensor sg_raw)";
// An op's argument list with the alias marks "(a!)" dropped and "-> ()" returned:
// the schema of its validation op, derived so the two can never drift apart.
// A plain scan, not std::regex: this runs while the library is being loaded, and
// std::regex's locale machinery crashed there with one toolchain (gcc 13 + torch 2.11).
std::string validation_args(const char* args) {
  std::string s(args);
  s = s.substr(0, s.find("->"));
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool alias_mark = s[i] == '(' && i + 3 < s.size() && s[i + 1] >= 'a' &&
                            s[i + 1] <= 'z' && s[i + 2] == '!' && s[i + 3] == ')';
    if (alias_mark) {
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out + "-> ()";
}

// The ops run in the dtypes they are given, under torch.autocast too: autocast may not
// cast weights that an op updates in place, and the ATen products inside the kernels
// (oneDNN, BLAS, cuBLAS, torch.mm in the Triton launchers) must not turn float32 into
// bfloat16 or float16 behind the op's back. So each op's autocast kernel turns
// autocast off and calls the op again, on the layers below (autograd, then the
// device's kernel); autocast's own state is restored on return.
void run_without_autocast(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  op.callBoxed(stack);
}
}  // namespace

TORCH_LIBRARY(dni, m) {
  auto def = [&](const std::string& name, const char* args) {
    m.def(torch::schema((name + args).c_str()));
    for (const auto key : {c10::DispatchKey::AutocastCPU, c10::DispatchKey::AutocastCUDA}) {
      m.impl(name.c_str(), torch::dispatch(key, torch::CppFunction::makeFromBoxedFunction<
                                            &run_without_autocast>()));
    }
  };
  // One decoupled layer step (see dni_kernels/reference.py::linear_step). Optional
  // prev_* group: the lower layer's SG regression toward this step's grad_x.
  // compute_grad_x=False (a first layer: its input needs no gradient) skips grad_x
  // and returns an empty tensor in its place; the prev_* group must then be absent.
  def("linear_step", kLinearStepArgs);
  def("linear_step_triton", kLinearStepArgs);
  // SG regression toward a target (see dni_kernels/reference.py::sg_update).
  def("sg_update", kSgUpdateArgs);
  def("sg_update_triton", kSgUpdateArgs);
  // Validation only (csrc/validate.cpp): the shared checks of csrc/checks.cpp, for
  // kernels launched from Python (Triton). Same arguments, nothing mutated or returned.
  def("_check_linear_step", validation_args(kLinearStepArgs).c_str());
  def("_check_sg_update", validation_args(kSgUpdateArgs).c_str());
  // LSTM window (see dni_kernels/reference.py, LSTM section): T steps forward, saving
  // the activated gates; BPTT from in-window and boundary gradients to δ_start and
  // the weight gradients; the bootstrapped window whose autograd (dni_kernels/ops.py)
  // injects the SG at s_T and regresses the SG (and aux) heads at s_0.
  // lstm_window_backward with compute_grad_x=False (x needs no gradient) skips the
  // grad_x product, a sixth of the window's GEMM work, and returns an empty tensor in
  // its place, as linear_step does.
  def("lstm_window_forward", kLstmWindowForwardArgs);
  def("lstm_window_forward_triton", kLstmWindowForwardArgs);
  def("lstm_window_backward", kLstmWindowBackwardArgs);
  def("lstm_window_backward_triton", kLstmWindowBackwardArgs);
  // Validation only (csrc/lstm_validate.cpp), for the Triton twins.
  def("_check_lstm_window_forward", validation_args(kLstmWindowForwardArgs).c_str());
  def("_check_lstm_window_backward", validation_args(kLstmWindowBackwardArgs).c_str());
  def("lstm_dni_window", kLstmDniWindowArgs);
  def("lstm_dni_window_triton", kLstmDniWindowArgs);  // runs the window's Triton twins
}
