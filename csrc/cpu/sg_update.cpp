#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "dni/checks.h"
#include "dni/math.h"
#include "sg_regression.h"

namespace dni::cpu {
namespace {

// Column chunk: rows are walked contiguously inside a chunk.
constexpr int64_t kColumnChunk = 64;
// Elements below which a loop runs on one thread: waking OpenMP workers costs more
// than the loop (and, on a loaded machine, a whole scheduler slice).
constexpr int64_t kSerialElements = 32768;

// Grain (in units of `per_unit` elements) that keeps small loops serial.
int64_t grain_for(int64_t per_unit, int64_t minimum) {
  return std::max<int64_t>(minimum, kSerialElements / std::max<int64_t>(per_unit, 1));
}

// e = sg_raw − target (into `e`), returns Σ e².
template <typename scalar_t>
double residual_and_sum_squares(const Tensor& sg_raw, const Tensor& target, Tensor& e) {
  const int64_t batch = e.size(0), feat = e.size(1);
  auto raw = sg_raw.accessor<scalar_t, 2>();
  auto tgt = target.accessor<scalar_t, 2>();
  scalar_t* out = e.data_ptr<scalar_t>();
  return at::parallel_reduce(
      0, batch, grain_for(feat, 1), 0.0,
      [&](int64_t begin, int64_t end, double acc) {
        for (int64_t r = begin; r < end; ++r) {
          scalar_t* row = out + r * feat;
          for (int64_t f = 0; f < feat; ++f) {
            scalar_t d = raw[r][f] - tgt[r][f];
            row[f] = d;
            acc += static_cast<double>(d) * d;
          }
        }
        return acc;
      },
      std::plus<double>());
}

template <typename scalar_t>
void scatter_update_impl(const Tensor& src, const int64_t* rows, Tensor& dst,
                         double scale, double step) {
  const int64_t batch = src.size(0), feat = src.size(1);
  const scalar_t* s = src.data_ptr<scalar_t>();
  scalar_t* d = dst.data_ptr<scalar_t>();
  const scalar_t sc = static_cast<scalar_t>(scale), st = static_cast<scalar_t>(step);
  // The dst rows that receive sums: row 0 (a bias), or the distinct labels (at most B
  // of a table's K rows), each given a slot; slot_of[r] is row r's slot.
  std::vector<int64_t> targets, slot_of(batch, 0);
  if (rows == nullptr) {
    targets.push_back(0);
  } else {
    std::vector<int64_t> slot_of_label(dst.size(0), -1);
    for (int64_t r = 0; r < batch; ++r) {
      int64_t& slot = slot_of_label[rows[r]];
      if (slot < 0) {
        slot = static_cast<int64_t>(targets.size());
        targets.push_back(rows[r]);
      }
      slot_of[r] = slot;
    }
  }
  const int64_t slots = static_cast<int64_t>(targets.size());
  // Columns are independent, so tasks own column chunks and never race, whatever the
  // labels. Inside a chunk, rows are walked contiguously and summed per slot in double,
  // then each target row takes one step, as the reference's index_add_ then update: a
  // step per batch row rounded small steps away (a K = 1 table did not move at all at
  // B = 16384, lr = 1e-3, where the reference's moved by 2e-3). Rows no label names
  // are not touched.
  at::parallel_for(0, feat, grain_for(batch, kColumnChunk), [&](int64_t begin, int64_t end) {
    std::vector<double> sums(slots * kColumnChunk);
    for (int64_t c0 = begin; c0 < end; c0 += kColumnChunk) {
      const int64_t c1 = std::min(end, c0 + kColumnChunk);
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t r = 0; r < batch; ++r) {
        double* sum = sums.data() + slot_of[r] * kColumnChunk - c0;
        const scalar_t* srow = s + r * feat;
        for (int64_t f = c0; f < c1; ++f) sum[f] += srow[f];
      }
      for (int64_t slot = 0; slot < slots; ++slot) {
        const double* sum = sums.data() + slot * kColumnChunk - c0;
        scalar_t* drow = d + targets[slot] * feat;
        for (int64_t f = c0; f < c1; ++f) {
          drow[f] = apply_update(drow[f], static_cast<scalar_t>(sc * sum[f]), st);
        }
      }
    }
  });
}

}  // namespace

void scatter_update(const Tensor& src, const int64_t* rows, Tensor& dst, double scale,
                    double step) {
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "dni_scatter_update", [&] {
    scatter_update_impl<scalar_t>(src, rows, dst, scale, step);
  });
}

Tensor sg_regression(const SgGroup& g, const Tensor& target, double lr) {
  const int64_t batch = g.h.size(0), feat = g.h.size(1);
  Tensor e = at::empty({batch, feat}, g.h.options());
  double sum_sq = 0;
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "dni_sg_residual", [&] {
    sum_sq = residual_and_sum_squares<scalar_t>(g.sg_raw, target, e);
  });
  const double scale = batch > 0 ? 2.0 / batch : 0.0;
  // "grads" mode accumulates d/dθ into the .grad buffers: p ← p − (−1)·d.
  const bool grads_mode = g.sg_weight_grad.has_value();
  const double step = grads_mode ? -1.0 : lr;
  Tensor weight_dst = grads_mode ? *g.sg_weight_grad : g.sg_weight;
  // A ← A − step·(2/B)·eᵀh, straight into A's storage: no [F, F] temporary.
  weight_dst.addmm_(e.t(), g.h, /*beta=*/1, /*alpha=*/-step * scale);
  if (g.sg_bias.has_value()) {
    Tensor dst = grads_mode ? *g.sg_bias_grad : *g.sg_bias;
    scatter_update(e, nullptr, dst, scale, step);
  }
  if (g.sg_table.has_value()) {
    Tensor dst = grads_mode ? *g.sg_table_grad : *g.sg_table;
    Tensor labels = g.labels->contiguous();
    scatter_update(e, labels.data_ptr<int64_t>(), dst, scale, step);
  }
  // Through float64 then an unchecked cast: a diverging run's loss overflows float32
  // to inf (as the reference's would) instead of raising.
  return at::scalar_tensor(batch > 0 ? sum_sq / batch : 0.0, g.h.options().dtype(at::kDouble))
      .to(g.h.scalar_type());
}

namespace {

Tensor sg_update_cpu(const Tensor& h, const Tensor& sg_raw, const Tensor& target,
                     const OptTensor& labels, Tensor& sg_weight, const OptTensor& sg_bias,
                     const OptTensor& sg_table, const OptTensor& sg_weight_grad,
                     const OptTensor& sg_bias_grad, const OptTensor& sg_table_grad,
                     double lr) {
  SgGroup group{h,        sg_raw,         labels,       sg_weight,    sg_bias,
                sg_table, sg_weight_grad, sg_bias_grad, sg_table_grad};
  check_sg_group(group, "", &target, lr, DtypePolicy{false}, /*check_label_values=*/true);
  return sg_regression(group, target, lr);
}

}  // namespace

TORCH_LIBRARY_IMPL(dni, CPU, m) { m.impl("sg_update", &sg_update_cpu); }

}  // namespace dni::cpu
