// Inference kernels for one direction of the Mamba mixer on CPU, reading tokens as (batch, length, channels) rows,
// the layout the linear projections produce and consume. The whole-sequence path of mamba-ssm works on
// (batch, channels, length), which on CPU costs a transposed copy around every projection and, for the backward
// direction, a flipped copy of the input and of the output. Here a row t is read where it lies, the backward
// direction walks t from the end (no flip), and the vector lanes run over channels:
//
//   conv_silu:  x' = SiLU(bias + sum_k w_k x_{t-(K-1)+k})  (causal; reversed: x_{t+(K-1)-k}, the flipped causal conv)
//   scan:       h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t,  out_t = (<C_t, h_t> + D u_t) * SiLU(z_t)
//               with dt_t = softplus(W_dt dtr_t + bias), where dtr_t (the low-rank dt), B_t and C_t are read in
//               place from x_proj's output row: dt_proj runs inside the step and dt is never stored.
//
// The state is N vectors of channels (no horizontal sum per step), B_t[n] and C_t[n] are broadcast. Channel blocks
// of one vector run in parallel. Forward only: training keeps the (batch, channels, length) kernel and its backward.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>

#include "vec_math.h"

namespace videomamba {
namespace {

constexpr int64_t kMaxState = 64;  // the (channels, length) kernel's limit too

void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.dim() == 3 && t.stride(2) == 1,
              "scan_channels_last: ", name, " must be float32 (batch, length, channels) on CPU with contiguous "
              "channels");
}

const float* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

// A (batch, length, channels) tensor's base pointer and row strides.
struct Rows {
  const float* p;
  int64_t s0, s1;
  explicit Rows(const at::Tensor& t) : p(t.data_ptr<float>()), s0(t.stride(0)), s1(t.stride(1)) {}
  const float* at(int64_t b, int64_t t) const { return p + b * s0 + t * s1; }
};

// Splits the (batch, vector-wide channel block) pairs among threads and calls fn(b, first, count) for runs of at
// most kTile consecutive blocks of one batch row: a run's states stay in L1 while it walks the sequence.
constexpr int64_t kTile = 16;

template <typename Fn>
void for_each_block_run(int64_t batch, int64_t dim, const Fn& fn) {
  const int64_t blocks = (dim + Vec::size() - 1) / Vec::size();
  at::parallel_for(0, batch * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / blocks, first = i % blocks, count = std::min(end - i, blocks - first);
      for (int64_t o = 0; o < count; o += kTile) fn(b, first + o, std::min(kTile, count - o));
      i += count;
    }
  });
}

// x (b, l, d) rows -> SiLU(depthwise conv) (b, l, d) contiguous (into out_buffer when given, which saves an
// allocation per direction); weight_t is the conv weight as (K, d).
at::Tensor conv_silu(const at::Tensor& x, const at::Tensor& weight_t, const std::optional<at::Tensor>& bias,
                     bool reverse, const std::optional<at::Tensor>& out_buffer) {
  check_rows(x, "x");
  TORCH_CHECK(weight_t.is_contiguous() && weight_t.dim() == 2 && weight_t.size(1) == x.size(2),
              "scan_channels_last: conv weight must be contiguous (K, channels)");
  const int64_t batch = x.size(0), len = x.size(1), dim = x.size(2), taps = weight_t.size(0);
  at::Tensor out = out_buffer.has_value() ? *out_buffer : at::empty({batch, len, dim}, x.options());
  TORCH_CHECK(out.is_contiguous() && out.sizes() == x.sizes() && out.scalar_type() == at::kFloat,
              "scan_channels_last: the conv's out buffer must be contiguous float32 of x's shape");
  TORCH_CHECK(out.data_ptr<float>() != x.data_ptr<float>(), "scan_channels_last: the conv cannot run in place");
  const Rows in(x);
  const float* w = weight_t.data_ptr<float>();
  const float* bias_p = ptr_or_null(bias);
  float* out_p = out.data_ptr<float>();
  at::parallel_for(0, batch * len, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / len, t = row % len;
      for (int64_t c0 = 0; c0 < dim; c0 += Vec::size()) {
        const int64_t n = std::min<int64_t>(Vec::size(), dim - c0);
        Vec acc = Vec::loadu(in.at(b, t) + c0, n) * Vec::loadu(w + (taps - 1) * dim + c0, n);
        if (bias_p) acc = acc + Vec::loadu(bias_p + c0, n);
        for (int64_t k = 0; k < taps - 1; ++k) {
          const int64_t s = reverse ? t + (taps - 1 - k) : t - (taps - 1 - k);
          if (s >= 0 && s < len) acc = acc + Vec::loadu(in.at(b, s) + c0, n) * Vec::loadu(w + k * dim + c0, n);
        }
        (acc * sigmoid(acc)).store(out_p + row * dim + c0, n);
      }
    }
  });
  return out;
}

struct ScanArgs {
  Rows u, xdbl;
  const float* dt_w_t;  // (rank, dim): dt_proj's weight, transposed
  const float* A_t;  // (nstate, dim)
  const float* z;
  int64_t z_s0, z_s1;
  const float* D;
  const float* delta_bias;
  float* out;  // (batch, len, dim) contiguous
  int64_t len, dim, nstate, rank, b_off, c_off;
  bool softplus, reverse, accumulate;
};

// Blocks [first, first + count) of batch row b, sequence outermost: each step reads its rows' channels in order.
// A step first computes dt, dt*u and the gate of all its blocks (independent of the state, so their long exp and
// division chains overlap), then runs the state updates.
template <int64_t NS>
void scan_blocks(const ScanArgs& a, int64_t b, int64_t first, int64_t count) {
  const int64_t ns = NS > 0 ? NS : a.nstate;
  std::vector<Vec> state(count * ns, Vec(0.f)), dts(count), dus(count), gates(count);
  for (int64_t s = 0; s < a.len; ++s) {
    const int64_t t = a.reverse ? a.len - 1 - s : s;
    const float* dtr = a.xdbl.at(b, t);  // the low-rank dt: the first `rank` values of the row
    for (int64_t j = 0; j < count; ++j) {
      const int64_t c0 = (first + j) * Vec::size(), n = std::min<int64_t>(Vec::size(), a.dim - c0);
      Vec dt = a.delta_bias ? Vec::loadu(a.delta_bias + c0, n) : Vec(0.f);
      for (int64_t r = 0; r < a.rank; ++r) dt = at::vec::fmadd(Vec::loadu(a.dt_w_t + r * a.dim + c0, n), Vec(dtr[r]), dt);
      dts[j] = a.softplus ? softplus(dt) : dt;
      dus[j] = dts[j] * Vec::loadu(a.u.at(b, t) + c0, n);
      if (a.z) {
        const Vec zt = Vec::loadu(a.z + b * a.z_s0 + t * a.z_s1 + c0, n);
        gates[j] = zt * sigmoid(zt);
      }
    }
    const float* Bt = a.xdbl.at(b, t) + a.b_off;
    const float* Ct = a.xdbl.at(b, t) + a.c_off;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t c0 = (first + j) * Vec::size(), n = std::min<int64_t>(Vec::size(), a.dim - c0);
      const Vec dt = dts[j], du = dus[j];
      Vec* h = state.data() + j * ns;
      Vec y(0.f);
      for (int64_t k = 0; k < ns; ++k) {
        const Vec decay = exp_inline(dt * Vec::loadu(a.A_t + k * a.dim + c0, n));
        h[k] = at::vec::fmadd(decay, h[k], du * Vec(Bt[k]));
        y = at::vec::fmadd(h[k], Vec(Ct[k]), y);
      }
      Vec o = a.D ? at::vec::fmadd(Vec::loadu(a.D + c0, n), Vec::loadu(a.u.at(b, t) + c0, n), y) : y;
      if (a.z) o = o * gates[j];
      float* dst = a.out + (b * a.len + t) * a.dim + c0;
      if (a.accumulate) o = o + Vec::loadu(dst, n);
      o.store(dst, n);
    }
  }
}

// u (b, l, d) rows; dt_weight (d, rank); A (d, n); x_dbl (b, l, e) rows holding the low-rank dt at 0, B_t at
// b_off = rank and C_t after it; z (b, l, d) rows.
// Writes into `out` (b, l, d) contiguous, adding to what it holds when accumulate (the other direction's output).
at::Tensor scan(const at::Tensor& u, const at::Tensor& dt_weight, const at::Tensor& A, const at::Tensor& x_dbl,
                const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& D,
                const std::optional<at::Tensor>& delta_bias, bool softplus, bool reverse,
                const std::optional<at::Tensor>& out) {
  check_rows(u, "u");
  check_rows(x_dbl, "x_dbl");
  const int64_t batch = u.size(0), len = u.size(1), dim = u.size(2), nstate = A.size(1);
  const int64_t rank = dt_weight.size(1), b_off = rank, c_off = rank + nstate;
  TORCH_CHECK(dt_weight.dim() == 2 && dt_weight.size(0) == dim && dt_weight.scalar_type() == at::kFloat,
              "scan_channels_last: dt_weight must be float32 (channels, rank)");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == dim && A.scalar_type() == at::kFloat && nstate <= kMaxState,
              "scan_channels_last: A must be float32 (channels, d_state) with d_state <= ", kMaxState);
  TORCH_CHECK(x_dbl.size(0) == batch && x_dbl.size(1) == len && x_dbl.size(2) == rank + 2 * nstate,
              "scan_channels_last: x_dbl must be (batch, length, rank + 2 * d_state) = (", batch, ", ", len, ", ",
              rank + 2 * nstate, ")");
  for (const auto* t : {&D, &delta_bias}) {
    TORCH_CHECK(!t->has_value() || ((*t)->is_contiguous() && (*t)->numel() == dim &&
                                     (*t)->scalar_type() == at::kFloat),
                "scan_channels_last: D and delta_bias must be float32 (channels,)");
  }
  if (z.has_value()) {
    check_rows(*z, "z");
    TORCH_CHECK(z->sizes() == u.sizes(), "scan_channels_last: z must have u's shape");
  }
  at::Tensor result = out.has_value() ? *out : at::empty({batch, len, dim}, u.options());
  TORCH_CHECK(result.is_contiguous() && result.sizes() == u.sizes() && result.scalar_type() == at::kFloat,
              "scan_channels_last: out must be contiguous float32 of u's shape");
  const at::Tensor A_t = A.t().contiguous(), dt_w_t = dt_weight.t().contiguous();
  const ScanArgs args{Rows(u), Rows(x_dbl), dt_w_t.data_ptr<float>(), A_t.data_ptr<float>(),
                      ptr_or_null(z), z.has_value() ? z->stride(0) : 0, z.has_value() ? z->stride(1) : 0,
                      ptr_or_null(D), ptr_or_null(delta_bias), result.data_ptr<float>(),
                      len, dim, nstate, rank, b_off, c_off, softplus, reverse, out.has_value()};
  for_each_block_run(batch, dim, [&](int64_t b, int64_t first, int64_t count) {
    if (nstate == 16) {
      scan_blocks<16>(args, b, first, count);
    } else {
      scan_blocks<0>(args, b, first, count);
    }
  });
  return result;
}

}  // namespace

void register_channels_last(pybind11::module& m) {
  m.def("conv_silu_channels_last", &conv_silu, "SiLU(causal depthwise conv) over (batch, length, channels) rows");
  m.def("scan_channels_last", &scan, "gated selective scan forward over (batch, length, channels) rows");
}

}  // namespace videomamba
