// Every dni op's schema, declared once. Backends register kernels with
// TORCH_LIBRARY_IMPL(dni, CPU|CUDA, m); fake kernels and autograd live in Python
// (dni_kernels/ops.py). Arguments an op updates in place carry (x!) and are not
// returned.
#include <Python.h>
#include <torch/library.h>

#include <string>

// Importing dni_kernels._C loads this library, which runs the registrations below.
// The module itself is empty: every entry point is a torch.ops.dni op.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1,
                                          nullptr};
  return PyModule_Create(&module_def);
}
}

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
    "Tensor(j!)? prev_sg_table_grad, float prev_lr) "
    "-> (Tensor h, Tensor sg_raw, Tensor grad_x, Tensor prev_loss)";

constexpr const char* kSgUpdateArgs =
    "(Tensor h, Tensor sg_raw, Tensor target, Tensor? labels, "
    "Tensor(a!) sg_weight, Tensor(b!)? sg_bias, Tensor(c!)? sg_table, "
    "Tensor(d!)? sg_weight_grad, Tensor(e!)? sg_bias_grad, Tensor(f!)? sg_table_grad, "
    "float lr) -> Tensor loss";
}  // namespace

TORCH_LIBRARY(dni, m) {
  auto def = [&](const std::string& name, const char* args) {
    m.def(torch::schema((name + args).c_str()));
  };
  // One decoupled layer step (see dni_kernels/reference.py::linear_step). Optional
  // prev_* group: the lower layer's SG regression toward this step's grad_x.
  def("linear_step", kLinearStepArgs);
  def("linear_step_triton", kLinearStepArgs);
  // SG regression toward a target (see dni_kernels/reference.py::sg_update).
  def("sg_update", kSgUpdateArgs);
  def("sg_update_triton", kSgUpdateArgs);
}
