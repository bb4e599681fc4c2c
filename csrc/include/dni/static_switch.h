// Turn runtime flags into compile-time constants, so hot loops carry no branches on
// activation, conditioning or update mode (the pattern of mamba's static_switch.h).
#pragma once

#include <c10/util/Exception.h>

#include "dni/math.h"

#define DNI_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                        \
    if (COND) {                                \
      constexpr bool CONST_NAME = true;        \
      return __VA_ARGS__();                    \
    } else {                                   \
      constexpr bool CONST_NAME = false;       \
      return __VA_ARGS__();                    \
    }                                          \
  }()

#define DNI_ACTIVATION_SWITCH(ACT, CONST_NAME, ...)                      \
  [&] {                                                                  \
    switch (ACT) {                                                       \
      case ::dni::Activation::kIdentity: {                               \
        constexpr ::dni::Activation CONST_NAME = ::dni::Activation::kIdentity; \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::dni::Activation::kRelu: {                                   \
        constexpr ::dni::Activation CONST_NAME = ::dni::Activation::kRelu; \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::dni::Activation::kTanh: {                                   \
        constexpr ::dni::Activation CONST_NAME = ::dni::Activation::kTanh; \
        return __VA_ARGS__();                                            \
      }                                                                  \
      case ::dni::Activation::kSigmoid: {                                \
        constexpr ::dni::Activation CONST_NAME = ::dni::Activation::kSigmoid; \
        return __VA_ARGS__();                                            \
      }                                                                  \
    }                                                                    \
    TORCH_CHECK(false, "dni: unknown activation");                       \
  }()
