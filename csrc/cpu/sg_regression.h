// The SG regression (dni_kernels/reference.py::sg_update) on CPU, shared by the
// sg_update op and linear_step's fused regression of the previous layer's SG.
#pragma once

#include "dni/checks.h"

namespace dni::cpu {

// Regresses the group's SG toward `target` ([B, F], any strides); returns the loss.
// Arguments must already be checked.
Tensor sg_regression(const SgGroup& g, const Tensor& target, double lr);

// One update of a [F] (or [K, F]) parameter from the column sums of src [B, F] per
// target row, summed in double: dst[k, f] = apply_update(dst[k, f],
// scale · Σ_{r: row(r) = k} src[r, f], step); rows no r maps to are left as they are.
// `rows` may be null (every r maps to row 0: a bias) or int64 labels (a class table).
void scatter_update(const Tensor& src, const int64_t* rows, Tensor& dst, double scale,
                    double step);

}  // namespace dni::cpu
