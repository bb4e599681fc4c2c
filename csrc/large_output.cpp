#include "dni/large_output.h"

#include <ATen/ops/empty.h>

#include <cstdint>

#include "dni/settings.h"

#ifdef __linux__
#include <sys/mman.h>
#endif
// A libc without MADV_HUGEPAGE (or a system without mmap) leaves the pages as they are.
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define DNI_HAS_HUGE_PAGE_ADVICE 1
#endif

namespace dni {
namespace {

constexpr size_t kMinAdvisedBytes = size_t{32} << 20;  // glibc's largest mmap threshold
// x86-64's THP size, and arm64's with 4 KiB base pages (with larger base pages
// arm64's is larger, and fewer pages are advised: harmless).
constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

void advise_huge_pages(void* data, size_t bytes) {
#ifdef DNI_HAS_HUGE_PAGE_ADVICE
  // Only the whole 2 MiB pages inside the block: the advice applies to the mapping,
  // and a partial page at either end may be shared with a neighbouring allocation.
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  // A failure (a kernel without THP) leaves ordinary pages: nothing to report.
  if (end > begin) {
    (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace

at::Tensor empty_large_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  // The setting is read for every CPU output, so a bad value raises whatever the size.
  if (out.device().is_cpu() && env_setting("DNI_CPU_HUGE_PAGES", {"off"}) == "auto" &&
      out.nbytes() >= kMinAdvisedBytes) {
    advise_huge_pages(out.data_ptr(), out.nbytes());
  }
  return out;
}

}  // namespace dni
