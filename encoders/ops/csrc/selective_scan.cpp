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
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kMaxStateVecs = 64;

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

inline float softplus(float x) { return x <= 20.f ? std::log1p(std::exp(x)) : x; }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
inline float hsum(const Vec& v) {
  return at::vec::vec_reduce_all<float>([](const Vec& a, const Vec& b) { return a + b; }, v);
}

const float* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

// dt_t = softplus(delta_t + bias) (or without softplus), for one row.
void row_dt(const ScanInputs& in, int64_t b, int64_t d, float* dt) {
  const float* delta = in.delta + in.row(b, d);
  const float bias = in.delta_bias ? in.delta_bias[d] : 0.f;
  for (int64_t t = 0; t < in.len; ++t) {
    const float x = delta[t] + bias;
    dt[t] = in.softplus ? softplus(x) : x;
  }
}

// Runs the recurrence over one row: y[t] = <C_t, h_t>; the final state goes to `last`,
// and every state to `history` (len x nstate) when it is not null.
void scan_row(const ScanInputs& in, int64_t b, int64_t d, const float* dt, float* y, float* last,
              float* history) {
  const int64_t nv = in.nstate / Vec::size();
  const float* u = in.u + in.row(b, d);
  const float* Bp = in.B + in.bc_offset(b, d);
  const float* Cp = in.C + in.bc_offset(b, d);
  Vec A[kMaxStateVecs], h[kMaxStateVecs];
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
      h[k] = at::vec::fmadd((dtv * A[k]).exp(), h[k], dtu * Vec::loadu(Bt + off));
      acc = at::vec::fmadd(h[k], Vec::loadu(Ct + off), acc);
      if (history) h[k].store(history + t * in.nstate + off);
    }
    y[t] = hsum(acc);
  }
  if (last) {
    for (int64_t k = 0; k < nv; ++k) h[k].store(last + k * Vec::size());
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
      row_dt(in, b, d, dt.data());
      scan_row(in, b, d, dt.data(), y, last_p + r * in.nstate, nullptr);
      const float* u_row = in.u + in.row(b, d);
      const float Dd = in.D ? in.D[d] : 0.f;
      const float* z_row = in.z ? in.z + in.row(b, d) : nullptr;
      for (int64_t t = 0; t < in.len; ++t) {
        y[t] += Dd * u_row[t];
        if (z_row) y[t] *= z_row[t] * sigmoid(z_row[t]);
      }
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
  const int64_t nv = in.nstate / Vec::size();

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
    std::vector<float> dt(in.len), y(in.len), gy(in.len), history(in.len * in.nstate);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, chunk = task % chunks;
      const int64_t d_end = std::min(in.dim, (chunk + 1) * rows_per_chunk);
      for (int64_t d = chunk * rows_per_chunk; d < d_end; ++d) {
        const int64_t row = in.row(b, d);
        const float* u_row = in.u + row;
        const float* delta_row = in.delta + row;
        const float* dout_row = dout_p + row;
        float* du_row = du_p + row;
        float* ddelta_row = ddelta_p + row;
        row_dt(in, b, d, dt.data());
        scan_row(in, b, d, dt.data(), y.data(), nullptr, history.data());

        // Output gate and skip connection: gy = d loss / d y.
        const float Dd = in.D ? in.D[d] : 0.f;
        float dD = 0.f;
        for (int64_t t = 0; t < in.len; ++t) {
          float g = dout_row[t];
          if (in.z) {
            const float zt = in.z[row + t], s = sigmoid(zt);
            dz_p[row + t] = g * (y[t] + Dd * u_row[t]) * s * (1.f + zt * (1.f - s));
            g *= zt * s;
          }
          gy[t] = g;
          dD += g * u_row[t];
          du_row[t] = g * Dd;
        }

        // Reverse-time pass: dh_t = dh_{t+1} * exp(dt_{t+1} A) + gy_t C_t.
        const float* Bp = in.B + in.bc_offset(b, d);
        const float* Cp = in.C + in.bc_offset(b, d);
        const int64_t part = ((b * chunks + chunk) * in.groups + d / group_size) * bc_slice;
        float* dB_row = dB_p + part;
        float* dC_row = dC_p + part;
        Vec A[kMaxStateVecs], dh[kMaxStateVecs], decay_next[kMaxStateVecs], dA[kMaxStateVecs];
        for (int64_t k = 0; k < nv; ++k) {
          A[k] = Vec::loadu(in.A + d * in.nstate + k * Vec::size());
          dh[k] = Vec(0.f);
          decay_next[k] = Vec(0.f);
          dA[k] = Vec(0.f);
        }
        const float bias = in.delta_bias ? in.delta_bias[d] : 0.f;
        float ddb = 0.f;
        for (int64_t t = in.len - 1; t >= 0; --t) {
          const float dt_t = dt[t], u_t = u_row[t];
          const Vec g(gy[t]), dtv(dt_t), dtu(dt_t * u_t);
          Vec sum_ddecay_A(0.f), sum_dh_B(0.f);
          for (int64_t k = 0; k < nv; ++k) {
            const int64_t off = t * in.nstate + k * Vec::size();
            dh[k] = at::vec::fmadd(dh[k], decay_next[k], g * Vec::loadu(Cp + off));
            at::vec::fmadd(g, Vec::loadu(history.data() + off), Vec::loadu(dC_row + off))
                .store(dC_row + off);
            const Vec decay = (dtv * A[k]).exp();
            const Vec h_prev = t > 0 ? Vec::loadu(history.data() + off - in.nstate) : Vec(0.f);
            const Vec ddecay = dh[k] * h_prev * decay;
            sum_ddecay_A = at::vec::fmadd(ddecay, A[k], sum_ddecay_A);
            dA[k] = at::vec::fmadd(ddecay, dtv, dA[k]);
            sum_dh_B = at::vec::fmadd(dh[k], Vec::loadu(Bp + off), sum_dh_B);
            at::vec::fmadd(dh[k], dtu, Vec::loadu(dB_row + off)).store(dB_row + off);
            decay_next[k] = decay;
          }
          const float dh_B = hsum(sum_dh_B);
          du_row[t] += dt_t * dh_B;
          float ddt = hsum(sum_ddecay_A) + u_t * dh_B;
          if (in.softplus) {
            const float x = delta_row[t] + bias;
            ddt *= x <= 20.f ? sigmoid(x) : 1.f;
          }
          ddelta_row[t] = ddt;
          ddb += ddt;
        }
        for (int64_t k = 0; k < nv; ++k) {
          dA[k].store(dA_p + (b * in.dim + d) * in.nstate + k * Vec::size());
        }
        dD_p[b * in.dim + d] = dD;
        ddb_p[b * in.dim + d] = ddb;
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "selective scan forward: (out, last_state)");
  m.def("backward", &backward, "selective scan backward with per-row state recomputation");
  m.def("vector_width", []() { return static_cast<int64_t>(Vec::size()); },
        "floats per SIMD vector this build was compiled for");
}
