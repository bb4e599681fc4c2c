// What the kernels read from the machine at run time: the $DNI_* path switches and the
// CPU's vector ISA.
#pragma once

#include <initializer_list>
#include <string>

namespace dni {

// $name, read on every call (a process can compare paths by switching between calls):
// "auto" when unset or empty, else one of `choices` ("auto" is always accepted). Any
// other value raises, naming the setting and its choices.
std::string env_setting(const char* name, std::initializer_list<const char*> choices);

// The CPU's ISA, checked once with GCC's builtins (false for a compiler without them or
// a CPU that is not x86). AVX-512 means F, VL, BW and DQ (torch's AVX512 capability)
// with AVX2 and FMA: what the AVX-512 LSTM steps are compiled for.
bool cpu_has_avx2_fma();
bool cpu_has_avx512();

}  // namespace dni
