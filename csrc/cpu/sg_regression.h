// The SG regression (dni_kernels/reference.py::sg_update) on CPU, shared by the
// sg_update op and linear_step's fused regression of the previous layer's SG.
#pragma once

#include "dni/checks.h"

namespace dni::cpu {

// Regresses the group's SG toward `target` ([B, F], any strides); returns the loss.
// Arguments must already be checked.
Tensor sg_regression(const SgGroup& g, const Tensor& target, double lr);

// Adds `sign_step`-scaled column sums of rows [B, F] into a [F] (or gathered [K, F])
// parameter: dst[row(r), f] = apply_update(dst[row(r), f], scale · src[r, f], step).
// `rows` may be null (every r maps to row 0: a bias) or int64 labels (a class table).
void scatter_update(const Tensor& src, const int64_t* rows, Tensor& dst, double scale,
                    double step);

}  // namespace dni::cpu
