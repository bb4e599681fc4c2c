// The tiled GEMM behind the multi-launch path: C[M, N] = A[M, K] · B[K, N] with a
// fused epilogue. A clean shared-memory-tiled FMA kernel with 4×4 register blocking
// (64×64 tile, k-step 16, 256 threads), float32 accumulation; no tensor cores. It is
// written for correctness and clarity over the odd, strided shapes DNI feeds it; the
// ops' layers are usually small enough that launch count, not FLOP rate, dominates.
//
// Operands are read with arbitrary strides (so transposes and non-contiguous inputs
// cost nothing) and converted to float32 as they enter shared memory. The epilogue
// sees each finished (m, n, acc) exactly once, in bounds, and may return a value
// whose sum over the whole output is added atomically to `epilogue.block_sum_dst`
// (the SG regression's loss).
//
// product() is what the paths call: this GEMM, or (the cuBLAS path) cuBLAS into a
// float32 scratch followed by the same epilogue as an elementwise kernel.
#pragma once

#include <c10/cuda/CUDAException.h>

#include <type_traits>

#include "device_utils.cuh"

namespace dni::cuda {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;
constexpr int kMicro = 4;  // each thread owns kMicro × kMicro outputs
static_assert(kTileM == 16 * kMicro && kTileN == 16 * kMicro, "16×16 threads");
static_assert(kTileM * kTileK == 4 * kGemmThreads, "4 loads per thread per operand");

// Element (r, c) of an operand at data[r * s_r + c * s_c].
template <typename T>
struct Operand {
  const T* data;
  int64_t s_r, s_c;
};

// Stage a kRows × kCols tile at (r0, c0) of `op` (float32, zero-padded beyond
// `rows`/`cols`) into dst[c][r] (transposed: the inner loop reads a column of it).
// The thread→element mapping walks the operand's unit-stride direction so that
// neighbouring threads read neighbouring addresses.
template <int kRows, int kCols, int kPad, typename T>
__device__ __forceinline__ void stage_tile(const Operand<T>& op, int64_t r0, int64_t c0,
                                           int64_t rows, int64_t cols,
                                           float (*dst)[kRows + kPad]) {
  const bool cols_contiguous = op.s_c == 1;
#pragma unroll
  for (int j = 0; j < kRows * kCols / kGemmThreads; ++j) {
    const int e = threadIdx.x + j * kGemmThreads;
    const int rr = cols_contiguous ? e / kCols : e % kRows;
    const int cc = cols_contiguous ? e % kCols : e / kRows;
    const int64_t r = r0 + rr, c = c0 + cc;
    dst[cc][rr] = (r < rows && c < cols) ? to_float(op.data[r * op.s_r + c * op.s_c]) : 0.f;
  }
}

template <typename TA, typename TB, typename Epilogue>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(Operand<TA> a, Operand<TB> b, int64_t M, int64_t N, int64_t K,
                Epilogue epilogue) {
  // a_s[k][m] and b_s[k][n]: the inner loop reads a row of each.
  __shared__ float a_s[kTileK][kTileM + 4];
  __shared__ float b_s[kTileK][kTileN + 4];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  // A 1-D grid of tiles, row-major over (m, n): no 65535 limit on either extent.
  const int64_t tiles_n = (N + kTileN - 1) / kTileN;
  const int64_t m0 = (blockIdx.x / tiles_n) * kTileM;
  const int64_t n0 = (blockIdx.x % tiles_n) * kTileN;
  // B as an N × K operand, so stage_tile writes b_s[k][n].
  const Operand<TB> bt{b.data, b.s_c, b.s_r};

  float acc[kMicro][kMicro] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
    stage_tile<kTileM, kTileK, 4>(a, m0, k0, M, K, a_s);
    stage_tile<kTileN, kTileK, 4>(bt, n0, k0, N, K, b_s);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float av[kMicro], bv[kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) av[i] = a_s[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kMicro; ++j) bv[j] = b_s[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

  // Strided ownership (ty + 16i, tx + 16j): a warp's stores cover 16 consecutive n.
  float partial = 0.f;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int64_t m = m0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (m < M && n < N) partial += epilogue(m, n, acc[i][j]);
    }
  }
  if (epilogue.block_sum_dst != nullptr) block_sum_atomic_add(partial, epilogue.block_sum_dst);
}

template <typename TA, typename TB, typename Epilogue>
void launch_gemm(Operand<TA> a, Operand<TB> b, int64_t M, int64_t N, int64_t K,
                 const Epilogue& epilogue, cudaStream_t stream) {
  if (M == 0 || N == 0) return;
  // At most 2^31 − 1 tiles: an output of 8.8e12 elements, far beyond device memory.
  const int64_t tiles = ceil_div(M, kTileM) * ceil_div(N, kTileN);
  gemm_kernel<<<static_cast<unsigned int>(tiles), kGemmThreads, 0, stream>>>(a, b, M, N, K,
                                                                             epilogue);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// epilogue(m, n, c[m, n]) for every element of a finished product c [M, N] (float32,
// row-major): the cuBLAS path's second half, with the same per-element contract and
// block sums as gemm_kernel's epilogue.
template <typename Epilogue>
__global__ void __launch_bounds__(kGemmThreads)
    epilogue_kernel(const float* __restrict__ c, int64_t M, int64_t N, Epilogue epilogue) {
  float partial = 0.f;
  const int64_t total = M * N;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < total;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    partial += epilogue(j / N, j % N, c[j]);
  }
  // Every thread gets here (the loop's bound is uniform), as the block sum requires.
  if (epilogue.block_sum_dst != nullptr) block_sum_atomic_add(partial, epilogue.block_sum_dst);
}

template <typename T>
constexpr ElementType element_type() {
  if constexpr (std::is_same_v<T, c10::Half>) {
    return ElementType::kFloat16;
  } else if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return ElementType::kBFloat16;
  } else {
    static_assert(std::is_same_v<T, float>, "float32, float16 or bfloat16 operands");
    return ElementType::kFloat32;
  }
}

// C = A · B with `epilogue` applied to each element: with a null `cublas_scratch` in
// one launch of the tiled GEMM above; otherwise C goes to that float32 scratch (at
// least M·N floats) on cuBLAS, and an elementwise kernel applies the epilogue.
template <typename TA, typename TB, typename Epilogue>
void product(float* cublas_scratch, Operand<TA> a, Operand<TB> b, int64_t M, int64_t N,
             int64_t K, const Epilogue& epilogue, cudaStream_t stream) {
  if (cublas_scratch == nullptr) return launch_gemm(a, b, M, N, K, epilogue, stream);
  if (M == 0 || N == 0) return;
  cublas_product(Matrix{a.data, a.s_r, a.s_c, element_type<TA>()},
                 Matrix{b.data, b.s_r, b.s_c, element_type<TB>()}, M, N, K, cublas_scratch);
  const int64_t blocks = ceil_div(M * N, kGemmThreads);
  epilogue_kernel<<<static_cast<unsigned int>(blocks < 4096 ? blocks : 4096), kGemmThreads, 0,
                    stream>>>(cublas_scratch, M, N, epilogue);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The in-place update epilogue: dst[m, n] ← apply_update(dst, scale · acc, step).
// With dst the weight this is W ← W − lr·(gᵀx); in the tiled GEMM no [M, N] temporary
// exists (on the cuBLAS path, its scratch is one).
template <typename P>
struct UpdateEpilogue {
  P* dst;
  int64_t ld;
  float scale, step;
  float* block_sum_dst = nullptr;
  __device__ float operator()(int64_t m, int64_t n, float acc) const {
    P& p = dst[m * ld + n];
    p = from_float<P>(apply_update(to_float(p), scale * acc, step));
    return 0.f;
  }
};

}  // namespace dni::cuda
