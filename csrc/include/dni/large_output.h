// Fresh tensors for a kernel's large outputs, with huge-page advice on the CPU.
//
// At its default thresholds glibc serves a block of 32 MiB or more (where its dynamic
// mmap threshold stops on 64-bit) from a fresh mmap and unmaps it on free, unless its
// heap happens to have that much free: an output that large is then faulted in anew
// on every call, 4 KiB at a time. Advised before its first write (MADV_HUGEPAGE,
// Linux), it is faulted in as 2 MiB pages instead: on a 2-core Zen 3 the LSTM window's
// forward + backward at T = 40, B = 256, H = 1024 took 0.97 of the time (98 000 →
// 12 500 faults per call), at T = 8, B = 256, H = 1024 0.99, and at T = 40, B = 256,
// H = 256 (gates advised, 40 MiB) the same. The advice needs the kernel's THP in
// "madvise" or "always" mode and is a no-op otherwise (and on a block that a raised
// M_MMAP_THRESHOLD left in glibc's heap, already faulted in, it gains nothing).
// $DNI_CPU_HUGE_PAGES = auto (default) | off.
#pragma once

#include <ATen/core/Tensor.h>

namespace dni {

// at::empty(sizes, options), advised as above when it is a CPU tensor of at least
// 32 MiB and $DNI_CPU_HUGE_PAGES is not off. Writes nothing to the memory itself
// (at::empty fills it first only when torch.use_deterministic_algorithms fills
// uninitialized memory; the advice then comes after those faults).
at::Tensor empty_large_output(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace dni
