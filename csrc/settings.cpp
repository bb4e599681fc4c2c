#include "dni/settings.h"

#include <c10/util/Exception.h>

#include <cstdlib>

namespace dni {

std::string env_setting(const char* name, std::initializer_list<const char*> choices) {
  const char* env = std::getenv(name);
  const std::string value = env != nullptr && *env != '\0' ? env : "auto";
  if (value == "auto") return value;
  std::string listed = "auto";
  size_t i = 0;
  for (const char* choice : choices) {
    if (value == choice) return value;
    listed += ++i == choices.size() ? " or " : ", ";
    listed += choice;
  }
  TORCH_CHECK(false, "dni: ", name, " must be ", listed, ", got '", value, "'");
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

bool cpu_has_avx512() {
  static const bool has =
      cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq");
  return has;
}
#else
bool cpu_has_avx2_fma() { return false; }
bool cpu_has_avx512() { return false; }
#endif

}  // namespace dni
