// Per-unit LSTM math (dni_kernels/reference.py::lstm_cell and lstm_window_backward),
// shared by the CPU kernels and the CUDA kernels. Gates in torch.nn.LSTM order
// (i, f, g, o); T is the accumulation type (float or double). The CPU forward takes
// only lstm_cell_next from here: it activates the gates with the vectorisable σ and
// tanh of csrc/cpu/vec_math.h.
#pragma once

#include "dni/math.h"

namespace dni {

template <typename T>
struct LstmGates {
  T i, f, g, o;  // activated: σ, σ, tanh, σ
};

// c_t = f ⊙ c_{t−1} + i ⊙ g from the activated gates (scalars: a loop that builds an
// LstmGates per unit is left unvectorised by GCC, see below).
template <typename T>
DNI_HOST_DEVICE T lstm_cell_next(T i, T f, T g, T c_prev) {
  return f * c_prev + i * g;
}

// Activated gates and c_{t−1} in; c_t and h_t out.
template <typename T>
DNI_HOST_DEVICE void lstm_state_update(const LstmGates<T>& a, T c_prev, T& c, T& h) {
  c = lstm_cell_next(a.i, a.f, a.g, c_prev);
  h = a.o * tanh(c);
}

// z (pre-activations) and c_{t−1} in; activated gates, c_t and h_t out.
template <typename T>
DNI_HOST_DEVICE void lstm_unit_forward(T zi, T zf, T zg, T zo, T c_prev, LstmGates<T>& a,
                                       T& c, T& h) {
  a.i = activation_forward<Activation::kSigmoid>(zi);
  a.f = activation_forward<Activation::kSigmoid>(zf);
  a.g = activation_forward<Activation::kTanh>(zg);
  a.o = activation_forward<Activation::kSigmoid>(zo);
  lstm_state_update(a, c_prev, c, h);
}

// One step of BPTT for one unit. dh = ∂L/∂h_t (all paths), dc = ∂L/∂c_t from above
// (the next step's carry plus any direct loss gradient on c_t). Writes the gradients of
// the pre-activations and returns ∂L/∂c_{t−1}. tanh(c_t) is given: the CPU kernel
// computes it with its vectorisable tanh (csrc/cpu/vec_math.h).
// (The gates come as scalars, not an LstmGates: GCC left a loop that built the struct
// per unit unvectorised.)
template <typename T>
DNI_HOST_DEVICE T lstm_unit_backward_given_tanh(T i, T f, T g, T o, T tanh_c, T c_prev,
                                                T dh, T dc, T& dzi, T& dzf, T& dzg, T& dzo) {
  dc += dh * o * activation_derivative<Activation::kTanh>(tanh_c);
  dzi = dc * g * activation_derivative<Activation::kSigmoid>(i);
  dzf = dc * c_prev * activation_derivative<Activation::kSigmoid>(f);
  dzg = dc * i * activation_derivative<Activation::kTanh>(g);
  dzo = dh * tanh_c * activation_derivative<Activation::kSigmoid>(o);
  return dc * f;
}

// The same, recomputing tanh(c_t) (cheap on a GPU).
template <typename T>
DNI_HOST_DEVICE T lstm_unit_backward(const LstmGates<T>& a, T c, T c_prev, T dh, T dc,
                                     T& dzi, T& dzf, T& dzg, T& dzo) {
  return lstm_unit_backward_given_tanh(a.i, a.f, a.g, a.o, T(tanh(c)), c_prev, dh, dc, dzi,
                                       dzf, dzg, dzo);
}

}  // namespace dni
