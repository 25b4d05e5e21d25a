// Selective scan (Mamba's S6 recurrence) on CPU, forward and backward.
//
//   h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t,   y_t = <C_t, h_t>,   out_t = (y_t + D u_t) * silu(z_t)
//
// One (batch, channel) row is a sequential recurrence over L with an N-wide state, so the state is
// vectorized over N (ATen's Vectorized<float>) and rows run in parallel (at::parallel_for).
// The Python wrapper hands over float32 contiguous tensors with B and C laid out as (b, g, l, np)
// and A as (d, np), where np is N padded to a multiple of the vector width (padding: A = 0, B = C = 0,
// which keeps padded state lanes at exactly zero).
// The backward pass recomputes the states of one row into a per-task (l, np) buffer instead of
// keeping (b, d, l, n) states from the forward pass. Gradients that several rows share (dB, dC across
// channels, dA / dD / d_delta_bias across the batch) go to per-task partial buffers summed afterwards,
// so there are no races and the result does not depend on thread scheduling.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>

#include "vec_math.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using namespace videomamba;

constexpr int64_t kMaxStateVecs = 64;
constexpr int64_t kSumBlock = 64;

struct ScanInputs {
  const float* u;
  const float* delta;
  const float* A;
  const float* B;
  const float* C;
  const float* D;
  const float* z;
  const float* delta_bias;
  int64_t batch, dim, len, nstate, groups;
  bool softplus;

  int64_t row(int64_t b, int64_t d) const { return (b * dim + d) * len; }
  int64_t bc_offset(int64_t b, int64_t d) const {
    return (b * groups + d / (dim / groups)) * len * nstate;
  }
};

inline float hsum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](const Vec& a, const Vec& b) { return a + b; }, v);
}

// Calls fn(t, count) over [0, len) in vector-wide steps; the last step may be partial.
template <typename Fn>
inline void for_each_vec(int64_t len, const Fn& fn) {
  for (int64_t t = 0; t < len; t += Vec::size()) fn(t, std::min<int64_t>(Vec::size(), len - t));
}

const float* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

// dt_t = softplus(delta_t + bias) (or without softplus) for one row; with softplus, also its
// derivative sigmoid(delta_t + bias) into dsoftplus when that is not null.
void row_dt(const ScanInputs& in, int64_t b, int64_t d, float* dt, float* dsoftplus) {
  const float* delta = in.delta + in.row(b, d);
  const Vec bias(in.delta_bias ? in.delta_bias[d] : 0.f);
  for_each_vec(in.len, [&](int64_t t, int64_t n) {
    const Vec x = Vec::loadu(delta + t, n) + bias;
    if (!in.softplus) {
      x.store(dt + t, n);
      return;
    }
    softplus(x).store(dt + t, n);
    if (dsoftplus) Vec::blendv(sigmoid(x), Vec(1.f), x > Vec(20.f)).store(dsoftplus + t, n);
  });
}

// Runs the recurrence over one row: y[t] = <C_t, h_t>; the final state goes to `last`,
// and every state to `history` (len x nstate) when it is not null.
// NV > 0 fixes the number of state vectors at compile time so the state stays in registers.
template <int64_t NV>
void scan_row_n(const ScanInputs& in, int64_t b, int64_t d, const float* dt, float* y, float* last,
                float* history) {
  const int64_t nv = NV > 0 ? NV : in.nstate / Vec::size();
  const float* u = in.u + in.row(b, d);
  const float* Bp = in.B + in.bc_offset(b, d);
  const float* Cp = in.C + in.bc_offset(b, d);
  Vec A[NV > 0 ? NV : kMaxStateVecs], h[NV > 0 ? NV : kMaxStateVecs];
  for (int64_t k = 0; k < nv; ++k) {
    A[k] = Vec::loadu(in.A + d * in.nstate + k * Vec::size());
    h[k] = Vec(0.f);
  }
  for (int64_t t = 0; t < in.len; ++t) {
    const Vec dtv(dt[t]);
    const Vec dtu(dt[t] * u[t]);
    const float* Bt = Bp + t * in.nstate;
    const float* Ct = Cp + t * in.nstate;
    Vec acc(0.f);
    for (int64_t k = 0; k < nv; ++k) {
      const int64_t off = k * Vec::size();
      h[k] = at::vec::fmadd(exp_inline(dtv * A[k]), h[k], dtu * Vec::loadu(Bt + off));
      acc = at::vec::fmadd(h[k], Vec::loadu(Ct + off), acc);
      if (history) h[k].store(history + t * in.nstate + off);
    }
    y[t] = hsum(acc);
  }
  if (last) {
    for (int64_t k = 0; k < nv; ++k) h[k].store(last + k * Vec::size());
  }
}

void scan_row(const ScanInputs& in, int64_t b, int64_t d, const float* dt, float* y, float* last,
              float* history) {
  switch (in.nstate / Vec::size()) {
    case 1: return scan_row_n<1>(in, b, d, dt, y, last, history);
    case 2: return scan_row_n<2>(in, b, d, dt, y, last, history);
    case 4: return scan_row_n<4>(in, b, d, dt, y, last, history);
    default: return scan_row_n<0>(in, b, d, dt, y, last, history);
  }
}

ScanInputs make_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                       const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                       const std::optional<at::Tensor>& z,
                       const std::optional<at::Tensor>& delta_bias, bool softplus) {
  for (const at::Tensor* t : {&u, &delta, &A, &B, &C}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                "selective_scan_cpu: tensors must be contiguous float32 on CPU");
  }
  TORCH_CHECK(u.dim() == 3 && B.dim() == 4 && A.dim() == 2, "selective_scan_cpu: bad ranks");
  ScanInputs in;
  in.u = u.data_ptr<float>();
  in.delta = delta.data_ptr<float>();
  in.A = A.data_ptr<float>();
  in.B = B.data_ptr<float>();
  in.C = C.data_ptr<float>();
  in.D = ptr_or_null(D);
  in.z = ptr_or_null(z);
  in.delta_bias = ptr_or_null(delta_bias);
  in.batch = u.size(0);
  in.dim = u.size(1);
  in.len = u.size(2);
  in.groups = B.size(1);
  in.nstate = A.size(1);
  in.softplus = softplus;
  TORCH_CHECK(in.nstate % Vec::size() == 0 && in.nstate / Vec::size() <= kMaxStateVecs,
              "selective_scan_cpu: padded state size ", in.nstate, " must be a multiple of ",
              Vec::size(), " and at most ", kMaxStateVecs * Vec::size());
  TORCH_CHECK(in.dim % in.groups == 0, "selective_scan_cpu: dim must divide into groups");
  return in;
}

// Per-row buffers for the backward pass. Inputs: dt, dsoftplus (null without softplus), gy (the
// gradient of y_t), history (every state). Outputs: du (added to), ddelta, dA (this row's (nstate,)
// slice), dB and dC (this task's (len, nstate) partial sums, added to).
struct RowGrads {
  const float* dt;
  const float* dsoftplus;
  const float* gy;
  const float* history;
  float* du;
  float* ddelta;
  float* dA;
  float* dB;
  float* dC;
};

// Through out = (y + D u) * silu(z): writes gy = d loss/d y, du = gy * D and dz; returns d loss/d D.
float gate_backward(const ScanInputs& in, int64_t b, int64_t d, const float* dout, const float* y,
                    float* gy, float* du, float* dz) {
  const float* u = in.u + in.row(b, d);
  const float* z = in.z ? in.z + in.row(b, d) : nullptr;
  const Vec Dd(in.D ? in.D[d] : 0.f);
  Vec dD(0.f);
  for_each_vec(in.len, [&](int64_t t, int64_t n) {
    Vec g = Vec::loadu(dout + t, n);
    const Vec ut = Vec::loadu(u + t, n);
    if (z) {
      const Vec zt = Vec::loadu(z + t, n), s = sigmoid(zt);
      const Vec pre = at::vec::fmadd(Dd, ut, Vec::loadu(y + t, n));
      (g * pre * s * (Vec(1.f) + zt * (Vec(1.f) - s))).store(dz + t, n);
      g = g * zt * s;
    }
    g.store(gy + t, n);
    (g * Dd).store(du + t, n);
    dD = at::vec::fmadd(g, ut, dD);  // lanes past n are zero in both
  });
  return hsum(dD);
}

// Reverse-time pass over one row: dh_t = dh_{t+1} * exp(dt_{t+1} A) + gy_t C_t, and from dh_t the
// gradients of dt_t, u_t, A, B_t, C_t. Returns this row's d loss / d delta_bias.
template <int64_t NV>
float scan_row_backward_n(const ScanInputs& in, int64_t b, int64_t d, const RowGrads& row) {
  const int64_t nv = NV > 0 ? NV : in.nstate / Vec::size();
  const float* u = in.u + in.row(b, d);
  const float* Bp = in.B + in.bc_offset(b, d);
  const float* Cp = in.C + in.bc_offset(b, d);
  constexpr int64_t kVecs = NV > 0 ? NV : kMaxStateVecs;
  // dA and d_delta_bias are sums over L: summed per block of kSumBlock steps, then across blocks,
  // which keeps fp32 rounding from growing with L.
  Vec A[kVecs], dh[kVecs], decay_next[kVecs], dA[kVecs], dA_block[kVecs];
  for (int64_t k = 0; k < nv; ++k) {
    A[k] = Vec::loadu(in.A + d * in.nstate + k * Vec::size());
    dh[k] = Vec(0.f);
    decay_next[k] = Vec(0.f);
    dA[k] = Vec(0.f);
    dA_block[k] = Vec(0.f);
  }
  float ddelta_bias = 0.f, ddelta_bias_block = 0.f;
  for (int64_t t = in.len - 1; t >= 0; --t) {
    const float dt_t = row.dt[t], u_t = u[t];
    const Vec g(row.gy[t]), dtv(dt_t), dtu(dt_t * u_t);
    Vec sum_ddecay_A(0.f), sum_dh_B(0.f);
    for (int64_t k = 0; k < nv; ++k) {
      const int64_t off = t * in.nstate + k * Vec::size();
      dh[k] = at::vec::fmadd(dh[k], decay_next[k], g * Vec::loadu(Cp + off));
      at::vec::fmadd(g, Vec::loadu(row.history + off), Vec::loadu(row.dC + off)).store(row.dC + off);
      const Vec decay = exp_inline(dtv * A[k]);
      const Vec h_prev = t > 0 ? Vec::loadu(row.history + off - in.nstate) : Vec(0.f);
      const Vec ddecay = dh[k] * h_prev * decay;
      sum_ddecay_A = at::vec::fmadd(ddecay, A[k], sum_ddecay_A);
      dA_block[k] = at::vec::fmadd(ddecay, dtv, dA_block[k]);
      sum_dh_B = at::vec::fmadd(dh[k], Vec::loadu(Bp + off), sum_dh_B);
      at::vec::fmadd(dh[k], dtu, Vec::loadu(row.dB + off)).store(row.dB + off);
      decay_next[k] = decay;
    }
    const float dh_B = hsum(sum_dh_B);
    row.du[t] += dt_t * dh_B;
    float ddt = hsum(sum_ddecay_A) + u_t * dh_B;
    if (row.dsoftplus) ddt *= row.dsoftplus[t];
    row.ddelta[t] = ddt;
    ddelta_bias_block += ddt;
    if (t % kSumBlock == 0) {
      for (int64_t k = 0; k < nv; ++k) {
        dA[k] = dA[k] + dA_block[k];
        dA_block[k] = Vec(0.f);
      }
      ddelta_bias += ddelta_bias_block;
      ddelta_bias_block = 0.f;
    }
  }
  for (int64_t k = 0; k < nv; ++k) dA[k].store(row.dA + k * Vec::size());
  return ddelta_bias;
}

float scan_row_backward(const ScanInputs& in, int64_t b, int64_t d, const RowGrads& row) {
  switch (in.nstate / Vec::size()) {
    case 1: return scan_row_backward_n<1>(in, b, d, row);
    case 2: return scan_row_backward_n<2>(in, b, d, row);
    case 4: return scan_row_backward_n<4>(in, b, d, row);
    default: return scan_row_backward_n<0>(in, b, d, row);
  }
}

std::vector<at::Tensor> forward(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                const at::Tensor& B, const at::Tensor& C,
                                const std::optional<at::Tensor>& D,
                                const std::optional<at::Tensor>& z,
                                const std::optional<at::Tensor>& delta_bias, bool softplus) {
  const ScanInputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, softplus);
  at::Tensor out = at::empty_like(u);
  at::Tensor last = at::empty({in.batch, in.dim, in.nstate}, u.options());
  float* out_p = out.data_ptr<float>();
  float* last_p = last.data_ptr<float>();
  at::parallel_for(0, in.batch * in.dim, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> dt(in.len);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / in.dim, d = r % in.dim;
      float* y = out_p + in.row(b, d);
      row_dt(in, b, d, dt.data(), nullptr);
      scan_row(in, b, d, dt.data(), y, last_p + r * in.nstate, nullptr);
      const float* u_row = in.u + in.row(b, d);
      const float* z_row = in.z ? in.z + in.row(b, d) : nullptr;
      const Vec Dd(in.D ? in.D[d] : 0.f);
      for_each_vec(in.len, [&](int64_t t, int64_t n) {
        Vec out_t = at::vec::fmadd(Dd, Vec::loadu(u_row + t, n), Vec::loadu(y + t, n));
        if (z_row) {
          const Vec zt = Vec::loadu(z_row + t, n);
          out_t = out_t * zt * sigmoid(zt);
        }
        out_t.store(y + t, n);
      });
    }
  });
  return {out, last};
}

// Returns du, ddelta, dA (d, np), dB, dC (b, g, l, np), dD, dz, d_delta_bias (the last three
// undefined when the input was not given).
std::vector<at::Tensor> backward(const at::Tensor& dout, const at::Tensor& u, const at::Tensor& delta,
                                 const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias, bool softplus,
                                 int64_t num_chunks) {
  const ScanInputs in = make_inputs(u, delta, A, B, C, D, z, delta_bias, softplus);
  TORCH_CHECK(dout.sizes() == u.sizes() && dout.is_contiguous() && dout.scalar_type() == at::kFloat,
              "selective_scan_cpu: dout must match u");
  const int64_t chunks = std::max<int64_t>(1, std::min(num_chunks, in.dim));
  const int64_t rows_per_chunk = (in.dim + chunks - 1) / chunks;

  at::Tensor du = at::empty_like(u);
  at::Tensor ddelta = at::empty_like(delta);
  at::Tensor dz = z.has_value() ? at::empty_like(u) : at::Tensor();
  at::Tensor dA_part = at::zeros({in.batch, in.dim, in.nstate}, u.options());
  at::Tensor dD_part = at::zeros({in.batch, in.dim}, u.options());
  at::Tensor ddb_part = at::zeros({in.batch, in.dim}, u.options());
  auto bc_part_shape = std::vector<int64_t>{in.batch, chunks, in.groups, in.len, in.nstate};
  at::Tensor dB_part = at::zeros(bc_part_shape, u.options());
  at::Tensor dC_part = at::zeros(bc_part_shape, u.options());

  const float* dout_p = dout.data_ptr<float>();
  float* du_p = du.data_ptr<float>();
  float* ddelta_p = ddelta.data_ptr<float>();
  float* dz_p = dz.defined() ? dz.data_ptr<float>() : nullptr;
  float* dA_p = dA_part.data_ptr<float>();
  float* dD_p = dD_part.data_ptr<float>();
  float* ddb_p = ddb_part.data_ptr<float>();
  float* dB_p = dB_part.data_ptr<float>();
  float* dC_p = dC_part.data_ptr<float>();
  const int64_t group_size = in.dim / in.groups;
  const int64_t bc_slice = in.len * in.nstate;

  at::parallel_for(0, in.batch * chunks, 1, [&](int64_t begin, int64_t end) {
    RowGrads row;
    std::vector<float> dt(in.len), dsoftplus(in.len), y(in.len), gy(in.len), history(in.len * in.nstate);
    row.dt = dt.data();
    row.dsoftplus = in.softplus ? dsoftplus.data() : nullptr;
    row.gy = gy.data();
    row.history = history.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, chunk = task % chunks;
      const int64_t d_end = std::min(in.dim, (chunk + 1) * rows_per_chunk);
      for (int64_t d = chunk * rows_per_chunk; d < d_end; ++d) {
        const int64_t r = in.row(b, d);
        row_dt(in, b, d, dt.data(), in.softplus ? dsoftplus.data() : nullptr);
        scan_row(in, b, d, dt.data(), y.data(), nullptr, history.data());
        dD_p[b * in.dim + d] = gate_backward(in, b, d, dout_p + r, y.data(), gy.data(), du_p + r,
                                             dz_p ? dz_p + r : nullptr);
        const int64_t part = ((b * chunks + chunk) * in.groups + d / group_size) * bc_slice;
        row.du = du_p + r;
        row.ddelta = ddelta_p + r;
        row.dA = dA_p + (b * in.dim + d) * in.nstate;
        row.dB = dB_p + part;
        row.dC = dC_p + part;
        ddb_p[b * in.dim + d] = scan_row_backward(in, b, d, row);
      }
    }
  });

  return {du,
          ddelta,
          dA_part.sum(0),
          dB_part.sum(1),
          dC_part.sum(1),
          D.has_value() ? dD_part.sum(0) : at::Tensor(),
          dz,
          delta_bias.has_value() ? ddb_part.sum(0) : at::Tensor()};
}

}  // namespace

namespace videomamba {
void register_channels_last(pybind11::module& m);  // scan_channels_last.cpp
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "selective scan forward: (out, last_state)");
  m.def("backward", &backward, "selective scan backward with per-row state recomputation");
  m.def("vector_width", []() { return static_cast<int64_t>(Vec::size()); },
        "floats per SIMD vector this build was compiled for");
  videomamba::register_channels_last(m);
}
