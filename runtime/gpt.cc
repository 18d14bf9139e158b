#include "runtime/gpt.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "core/check.h"
#include "core/clock.h"
#include "runtime/rng.h"

namespace cohort {
namespace {

constexpr uint64_t kStreamGptInit = 200;

// A standard normal from one 64-bit hash (Box-Muller on two 32-bit halves
// of two mixed words).
float StandardNormal(uint64_t h) {
  const uint64_t h2 = Mix64(h);
  const double u1 = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
  const double u2 = static_cast<double>(h2 >> 11) * 0x1.0p-53;         // [0, 1)
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
}

}  // namespace

Status Gpt::CheckTensorParallel(const GptConfig& c, int tp_size) {
  if (tp_size < 1)
    return InvalidArgument("parallel.tensor must be at least 1, not " + std::to_string(tp_size));
  if (c.heads % tp_size != 0) {
    return InvalidArgument("parallel.tensor " + std::to_string(tp_size) +
                           " does not divide model.heads " + std::to_string(c.heads) +
                           " (attention is split by heads); use a tensor size that does");
  }
  if ((4 * c.width) % tp_size != 0) {
    return InvalidArgument("parallel.tensor " + std::to_string(tp_size) +
                           " does not divide the MLP width 4 x " + std::to_string(c.width));
  }
  return Status::Ok();
}

Gpt::Gpt(const GptConfig& config, Communicator* tp, Compute* compute)
    : Gpt(config, tp, tp ? tp->size() : 1, tp ? tp->rank() : 0, compute) {}

Gpt::Gpt(const GptConfig& config, Communicator* tp, int tp_size, int tp_rank, Compute* compute)
    : config_(config),
      tp_(tp),
      tp_size_(tp_size),
      tp_rank_(tp_rank),
      compute_(compute != nullptr ? compute : &HostCompute()) {
  BuildLayout();
}

Gpt Gpt::Layout(const GptConfig& config, int tp_size, int tp_rank) {
  return Gpt(config, nullptr, tp_size, tp_rank, nullptr);
}

int64_t Gpt::Add(const std::string& name, int64_t rows, int64_t cols, LayerSplit split, int groups,
                 float init_std, float init_value, bool is_bias) {
  Tensor2 t;
  t.rows = rows;
  t.cols = cols;
  t.split = split;
  t.groups = groups;
  t.init_std = init_std;
  t.init_value = init_value;
  t.offset = num_params_;
  t.full_offset = full_num_params_;
  int64_t local_rows = rows, local_cols = cols;
  if (split == LayerSplit::kColumn) local_rows = rows / tp_size_;
  if (split == LayerSplit::kRow && !is_bias) local_cols = cols / tp_size_;
  const bool matrix = cols > 1 || !is_bias;
  ParamInfo info{
      name,
      t.offset,
      matrix ? std::vector<int64_t>{local_rows, local_cols} : std::vector<int64_t>{local_rows},
      matrix ? std::vector<int64_t>{rows, cols} : std::vector<int64_t>{rows},
      split,
      is_bias};
  info_.push_back(std::move(info));
  num_params_ += local_rows * local_cols;
  full_num_params_ += rows * cols;
  tensors_.push_back(t);
  return t.offset;
}

void Gpt::BuildLayout() {
  COHORT_CHECK(CheckTensorParallel(config_, tp_size_).ok()) << "unchecked tensor-parallel split";
  COHORT_CHECK(tp_rank_ >= 0 && tp_rank_ < tp_size_) << "tensor rank out of range";
  const int64_t C = config_.width, L = config_.layers;
  ct_ = C / tp_size_;
  heads_local_ = config_.heads / tp_size_;
  const auto R = LayerSplit::kReplicated, Col = LayerSplit::kColumn, Row = LayerSplit::kRow;
  const float proj_std = kGptInitStd / std::sqrt(2.0f * static_cast<float>(L));
  group_start_.push_back(0);
  wte_ = Add("transformer.wte.weight", config_.vocab, C, R, 1, kGptInitStd, 0, false);
  wpe_ = Add("transformer.wpe.weight", config_.context, C, R, 1, kGptInitStd, 0, false);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    group_start_.push_back(num_params_);
    Block b;
    b.ln1_w = Add(p + "ln_1.weight", C, 1, R, 1, 0, 1, true);
    b.ln1_b = Add(p + "ln_1.bias", C, 1, R, 1, 0, 0, true);
    b.qkv_w = Add(p + "attn.c_attn.weight", 3 * C, C, Col, 3, kGptInitStd, 0, false);
    b.qkv_b = Add(p + "attn.c_attn.bias", 3 * C, 1, Col, 3, 0, 0, true);
    b.proj_w = Add(p + "attn.c_proj.weight", C, C, Row, 1, proj_std, 0, false);
    b.proj_b = Add(p + "attn.c_proj.bias", C, 1, Row, 1, 0, 0, true);
    b.ln2_w = Add(p + "ln_2.weight", C, 1, R, 1, 0, 1, true);
    b.ln2_b = Add(p + "ln_2.bias", C, 1, R, 1, 0, 0, true);
    b.fc_w = Add(p + "mlp.c_fc.weight", 4 * C, C, Col, 1, kGptInitStd, 0, false);
    b.fc_b = Add(p + "mlp.c_fc.bias", 4 * C, 1, Col, 1, 0, 0, true);
    b.mproj_w = Add(p + "mlp.c_proj.weight", C, 4 * C, Row, 1, proj_std, 0, false);
    b.mproj_b = Add(p + "mlp.c_proj.bias", C, 1, Row, 1, 0, 0, true);
    blocks_.push_back(b);
  }
  group_start_.push_back(num_params_);
  lnf_w_ = Add("transformer.ln_f.weight", C, 1, R, 1, 0, 1, true);
  lnf_b_ = Add("transformer.ln_f.bias", C, 1, R, 1, 0, 0, true);
}

void Gpt::MapTensor(const Tensor2& t, const float* from, float* to, bool local_to_full) const {
  auto copy = [&](int64_t local_at, int64_t full_at, int64_t n) {
    if (local_to_full) {
      std::memcpy(to + t.full_offset + full_at, from + t.offset + local_at,
                  static_cast<size_t>(n) * 4);
    } else {
      std::memcpy(to + t.offset + local_at, from + t.full_offset + full_at,
                  static_cast<size_t>(n) * 4);
    }
  };
  if (t.split == LayerSplit::kReplicated || tp_size_ == 1 ||
      (t.split == LayerSplit::kRow && t.cols == 1)) {
    copy(0, 0, t.rows * t.cols);
  } else if (t.split == LayerSplit::kColumn) {
    // Each of the `groups` row blocks (q, k, v) is split into T slices;
    // this rank holds slice r of each, in group order.
    const int64_t group_rows = t.rows / t.groups, slice = group_rows / tp_size_;
    for (int g = 0; g < t.groups; ++g) {
      copy(g * slice * t.cols, (g * group_rows + tp_rank_ * slice) * t.cols, slice * t.cols);
    }
  } else {  // kRow: every row's columns [r cols/T, (r+1) cols/T)
    const int64_t w = t.cols / tp_size_;
    for (int64_t i = 0; i < t.rows; ++i) copy(i * w, i * t.cols + tp_rank_ * w, w);
  }
}

void Gpt::LocalToFull(const float* local, float* full) const {
  for (const Tensor2& t : tensors_) MapTensor(t, local, full, true);
}

void Gpt::FullToLocal(const float* full, float* local) const {
  for (const Tensor2& t : tensors_) MapTensor(t, full, local, false);
}

void Gpt::Init(float* params, uint64_t seed) const {
  std::vector<float> full(static_cast<size_t>(full_num_params_));
  for (const Tensor2& t : tensors_) {
    float* dst = full.data() + t.full_offset;
    const int64_t n = t.rows * t.cols;
    for (int64_t i = 0; i < n; ++i) {
      dst[i] =
          t.init_std > 0
              ? t.init_std * StandardNormal(HashCombine(seed, kStreamGptInit,
                                                        static_cast<uint64_t>(t.full_offset + i)))
              : t.init_value;
    }
  }
  FullToLocal(full.data(), params);
}

std::vector<std::pair<int64_t, int64_t>> Gpt::LayerRanges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t g = 0; g < group_start_.size(); ++g) {
    const int64_t end = g + 1 < group_start_.size() ? group_start_[g + 1] : num_params_;
    out.emplace_back(group_start_[g], end - group_start_[g]);
  }
  return out;
}

Status Gpt::Reserve(int64_t batch) {
  if (!loss_.defined()) {
    COHORT_ASSIGN_OR_RETURN(loss_, compute_->Alloc({1}, DType::kF32));
  }
  if (batch <= reserved_batch_) return Status::Ok();
  const int64_t T = config_.context, C = config_.width, N = batch * T, L = config_.layers;
  auto alloc = [&](Tensor* t, int64_t n) -> Status {
    *t = Tensor();  // free the smaller buffer first
    COHORT_ASSIGN_OR_RETURN(*t, compute_->Alloc({n}, DType::kF32));
    return Status::Ok();
  };
  res_.assign(static_cast<size_t>(L + 1), {});
  for (auto& t : res_) COHORT_RETURN_IF_ERROR(alloc(&t, N * C));
  mid_.assign(static_cast<size_t>(L), {});
  qkv_.assign(static_cast<size_t>(L), {});
  att_.assign(static_cast<size_t>(L), {});
  atty_.assign(static_cast<size_t>(L), {});
  fch_.assign(static_cast<size_t>(L), {});
  stats_.assign(static_cast<size_t>(L), {});
  for (size_t l = 0; l < static_cast<size_t>(L); ++l) {
    COHORT_RETURN_IF_ERROR(alloc(&mid_[l], N * C));
    COHORT_RETURN_IF_ERROR(alloc(&qkv_[l], N * 3 * ct_));
    COHORT_RETURN_IF_ERROR(alloc(&att_[l], batch * heads_local_ * T * T));
    COHORT_RETURN_IF_ERROR(alloc(&atty_[l], N * ct_));
    COHORT_RETURN_IF_ERROR(alloc(&fch_[l], N * 4 * ct_));
    COHORT_RETURN_IF_ERROR(alloc(&stats_[l], 4 * N));
  }
  COHORT_RETURN_IF_ERROR(alloc(&lnf_stats_, 2 * N));
  COHORT_RETURN_IF_ERROR(alloc(&logits_, N * config_.vocab));
  COHORT_RETURN_IF_ERROR(alloc(&ln_out_, N * C));
  COHORT_RETURN_IF_ERROR(alloc(&gelu_, N * 4 * ct_));
  COHORT_RETURN_IF_ERROR(alloc(&dres_, N * C));
  COHORT_RETURN_IF_ERROR(alloc(&dx_, N * C));
  COHORT_RETURN_IF_ERROR(alloc(&dqkv_, N * 3 * ct_));
  COHORT_RETURN_IF_ERROR(alloc(&datty_, N * ct_));
  COHORT_RETURN_IF_ERROR(alloc(&att_scratch_, T * T));
  reserved_batch_ = batch;
  return Status::Ok();
}

Status Gpt::Reserve16(int64_t batch) {
  if (batch <= reserved16_batch_) return Status::Ok();
  const int64_t N = batch * config_.context, C = config_.width;
  a16_ = Tensor();
  b16_ = Tensor();
  COHORT_ASSIGN_OR_RETURN(a16_, compute_->Alloc({N * std::max(C, 4 * ct_)}, prec_->compute));
  COHORT_ASSIGN_OR_RETURN(
      b16_, compute_->Alloc({N * std::max({config_.vocab, C, 4 * ct_})}, prec_->compute));
  reserved16_batch_ = batch;
  return Status::Ok();
}

Status Gpt::TensorAllReduce(float* buf, int64_t n, StepTimes* times) {
  const double t0 = MonotonicSeconds();
  // The collective reads what the compute produced: wait for it (nothing
  // to wait for on the CPU).
  COHORT_RETURN_IF_ERROR(compute_->Sync().WithContext("before a tensor-parallel all-reduce"));
  Status s = tp_->AllReduce(buf, buf, static_cast<size_t>(n), DType::kF32, ReduceOp::kSum);
  if (times) times->tensor_comm_s += MonotonicSeconds() - t0;
  return s.WithContext("tensor-parallel all-reduce");
}

bool Gpt::mixed() const { return prec_ != nullptr && prec_->compute != DType::kF32; }

void Gpt::MatmulXWt(const float* x, int64_t w, float* y, int64_t rows, int64_t in, int64_t out) {
  if (!mixed()) {
    compute_->Gemm(false, true, rows, out, in, 1.0f, x, in, p_ + w, in, 0.0f, y, out);
    return;
  }
  const DType t = prec_->compute;
  compute_->CastFromFloat(x, t, a16_.raw(), rows * in, 1.0f);
  compute_->GemmMixed(false, true, rows, out, in, 1.0f, t, a16_.raw(), in, prec_->params16 + w, in,
                      0.0f, DType::kF32, y, out);
}

void Gpt::MatmulDyW(const float* dy, int64_t w, float* dx, int64_t rows, int64_t in, int64_t out) {
  if (!mixed()) {
    compute_->Gemm(false, false, rows, in, out, 1.0f, dy, out, p_ + w, in, 0.0f, dx, in);
    return;
  }
  const DType t = prec_->compute;
  compute_->CastFromFloat(dy, t, b16_.raw(), rows * out, 1.0f);
  compute_->GemmMixed(false, false, rows, in, out, 1.0f, t, b16_.raw(), out, prec_->params16 + w,
                      in, 0.0f, DType::kF32, dx, in);
}

void Gpt::MatmulDyTX(const float* dy, const float* x, float* dw, int64_t rows, int64_t in,
                     int64_t out) {
  if (!mixed()) {
    compute_->Gemm(true, false, out, in, rows, 1.0f, dy, out, x, in, 0.0f, dw, in);
    return;
  }
  const DType t = prec_->compute;
  compute_->CastFromFloat(dy, t, b16_.raw(), rows * out, 1.0f);
  compute_->CastFromFloat(x, t, a16_.raw(), rows * in, 1.0f);
  compute_->GemmMixed(true, false, out, in, rows, 1.0f, t, b16_.raw(), out, a16_.raw(), in, 0.0f,
                      DType::kF32, dw, in);
}

Status Gpt::Linear(const float* x, int64_t w, const float* bias, float* y, int64_t rows, int64_t in,
                   int64_t out, bool reduce, StepTimes* times) {
  MatmulXWt(x, w, y, rows, in, out);
  if (reduce && tp_size_ > 1) COHORT_RETURN_IF_ERROR(TensorAllReduce(y, rows * out, times));
  if (bias != nullptr) compute_->BiasActForward(y, bias, y, rows, out, kernels::Activation::kNone);
  return Status::Ok();
}

Status Gpt::Forward(const float* p, const int32_t* tokens, int64_t batch, StepTimes* times) {
  COHORT_RETURN_IF_ERROR(Reserve(batch));
  const double t0 = MonotonicSeconds();
  const int64_t T = config_.context, C = config_.width, N = batch * T, Ct = ct_;
  Compute& c = *compute_;
  float* ln = ln_out_.data<float>();
  c.EmbeddingForward(tokens, p + wte_, p + wpe_, res_[0].data<float>(), batch, T, C);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    const float* x = res_[l].data<float>();
    float* mid = mid_[l].data<float>();
    float* out = res_[l + 1].data<float>();
    float* st = stats_[l].data<float>();
    float* qkv = qkv_[l].data<float>();
    float* atty = atty_[l].data<float>();
    float* fch = fch_[l].data<float>();
    float* g = gelu_.data<float>();
    c.LayerNormForward(x, p + b.ln1_w, p + b.ln1_b, ln, st, st + N, N, C, kGptLayerNormEps);
    COHORT_RETURN_IF_ERROR(Linear(ln, b.qkv_w, p + b.qkv_b, qkv, N, C, 3 * Ct, false, times));
    c.AttentionForward(qkv, atty, att_[l].data<float>(), batch, T, Ct, heads_local_);
    COHORT_RETURN_IF_ERROR(Linear(atty, b.proj_w, p + b.proj_b, mid, N, Ct, C, true, times));
    c.ResidualAdd(mid, x, mid, N * C);
    c.LayerNormForward(mid, p + b.ln2_w, p + b.ln2_b, ln, st + 2 * N, st + 3 * N, N, C,
                       kGptLayerNormEps);
    COHORT_RETURN_IF_ERROR(Linear(ln, b.fc_w, p + b.fc_b, fch, N, C, 4 * Ct, false, times));
    c.GeluForward(fch, g, N * 4 * Ct);
    COHORT_RETURN_IF_ERROR(Linear(g, b.mproj_w, p + b.mproj_b, out, N, 4 * Ct, C, true, times));
    c.ResidualAdd(out, mid, out, N * C);
  }
  float* lf = lnf_stats_.data<float>();
  c.LayerNormForward(res_.back().data<float>(), p + lnf_w_, p + lnf_b_, ln, lf, lf + N, N, C,
                     kGptLayerNormEps);
  // The head, tied to wte: logits = ln_f(x) wte^T.
  MatmulXWt(ln, wte_, logits_.data<float>(), N, C, config_.vocab);
  if (times) times->forward_s += MonotonicSeconds() - t0;
  return Status::Ok();
}

Status Gpt::Backward(const float* p, const int32_t* tokens, int64_t batch, float* grads,
                     StepTimes* times, const std::function<void(int)>* on_layer_grads) {
  const double t0 = MonotonicSeconds();
  const int64_t T = config_.context, C = config_.width, N = batch * T, Ct = ct_, V = config_.vocab;
  Compute& c = *compute_;
  float* ln = ln_out_.data<float>();
  float* dres = dres_.data<float>();
  float* dx = dx_.data<float>();
  float* g = gelu_.data<float>();
  float* dqkv = dqkv_.data<float>();
  float* datty = datty_.data<float>();
  const float* dlogits = logits_.data<float>();
  auto ready = [&](int group) {
    if (on_layer_grads != nullptr && *on_layer_grads) (*on_layer_grads)(group);
  };
  // LayerNorm, embedding and bias gradients add into zeros; the GEMMs overwrite.
  c.Zero(grads, static_cast<size_t>(num_params_) * 4);
  c.Zero(dres, static_cast<size_t>(N * C) * 4);
  // Head: ln (still ln_f's output) -> logits.
  MatmulDyW(dlogits, wte_, dx, N, C, V);
  MatmulDyTX(dlogits, ln, grads + wte_, N, C, V);
  const float* lf = lnf_stats_.data<float>();
  c.LayerNormBackward(dx, res_.back().data<float>(), p + lnf_w_, lf, lf + N, dres, grads + lnf_w_,
                      grads + lnf_b_, N, C);
  ready(static_cast<int>(blocks_.size()) + 1);
  for (size_t li = blocks_.size(); li-- > 0;) {
    const Block& b = blocks_[li];
    const float* x = res_[li].data<float>();
    const float* mid = mid_[li].data<float>();
    float* st = stats_[li].data<float>();
    const float* fch = fch_[li].data<float>();
    // MLP: out = mid + mproj(gelu(fc(ln_2(mid)))).
    c.GeluForward(fch, g, N * 4 * Ct);
    MatmulDyTX(dres, g, grads + b.mproj_w, N, 4 * Ct, C);
    c.BiasGrad(dres, grads + b.mproj_b, N, C);
    MatmulDyW(dres, b.mproj_w, g, N, 4 * Ct, C);
    c.GeluBackward(fch, g, g, N * 4 * Ct);
    c.LayerNormForward(mid, p + b.ln2_w, p + b.ln2_b, ln, st + 2 * N, st + 3 * N, N, C,
                       kGptLayerNormEps);
    MatmulDyTX(g, ln, grads + b.fc_w, N, C, 4 * Ct);
    c.BiasGrad(g, grads + b.fc_b, N, 4 * Ct);
    MatmulDyW(g, b.fc_w, dx, N, C, 4 * Ct);
    if (tp_size_ > 1) COHORT_RETURN_IF_ERROR(TensorAllReduce(dx, N * C, times));
    c.LayerNormBackward(dx, mid, p + b.ln2_w, st + 2 * N, st + 3 * N, dres, grads + b.ln2_w,
                        grads + b.ln2_b, N, C);
    // Attention: mid = x + proj(attention(qkv(ln_1(x)))).
    MatmulDyTX(dres, atty_[li].data<float>(), grads + b.proj_w, N, Ct, C);
    c.BiasGrad(dres, grads + b.proj_b, N, C);
    MatmulDyW(dres, b.proj_w, datty, N, Ct, C);
    c.AttentionBackward(datty, qkv_[li].data<float>(), att_[li].data<float>(), dqkv,
                        att_scratch_.data<float>(), batch, T, Ct, heads_local_);
    c.LayerNormForward(x, p + b.ln1_w, p + b.ln1_b, ln, st, st + N, N, C, kGptLayerNormEps);
    MatmulDyTX(dqkv, ln, grads + b.qkv_w, N, C, 3 * Ct);
    c.BiasGrad(dqkv, grads + b.qkv_b, N, 3 * Ct);
    MatmulDyW(dqkv, b.qkv_w, dx, N, C, 3 * Ct);
    if (tp_size_ > 1) COHORT_RETURN_IF_ERROR(TensorAllReduce(dx, N * C, times));
    c.LayerNormBackward(dx, x, p + b.ln1_w, st, st + N, dres, grads + b.ln1_w, grads + b.ln1_b, N,
                        C);
    ready(static_cast<int>(li) + 1);
  }
  c.EmbeddingBackward(dres, tokens, grads + wte_, grads + wpe_, batch, T, C);
  ready(0);
  if (times) times->backward_s += MonotonicSeconds() - t0;
  return Status::Ok();
}

Status Gpt::ForwardBackwardTo(const float* params, const void* inputs, const int32_t* targets,
                              int64_t batch, float* grads, float* loss, StepTimes* times,
                              const std::function<void(int)>* on_layer_grads,
                              const Precision* precision) {
  const float scale = precision != nullptr ? precision->loss_scale : 1.0f;
  COHORT_CHECK(precision == nullptr || precision->compute == DType::kF32 ||
               precision->params16 != nullptr)
      << "mixed precision without the 16-bit weights";
  p_ = params;
  prec_ = precision;
  if (mixed()) COHORT_RETURN_IF_ERROR(Reserve16(batch));
  const auto* tokens = static_cast<const int32_t*>(inputs);
  COHORT_RETURN_IF_ERROR(Forward(params, tokens, batch, times));
  const int64_t N = batch * config_.context;
  const double t0 = MonotonicSeconds();
  float* logits = logits_.data<float>();
  compute_->CrossEntropyFused(logits, targets, logits, N, config_.vocab,
                              scale / static_cast<float>(N), loss);
  if (times) times->forward_s += MonotonicSeconds() - t0;
  return Backward(params, tokens, batch, grads, times, on_layer_grads);
}

Status Gpt::LossTo(const float* params, const void* inputs, const int32_t* targets, int64_t batch,
                   float* loss) {
  p_ = params;
  prec_ = nullptr;  // evaluation reads the fp32 (master) weights
  COHORT_RETURN_IF_ERROR(Forward(params, static_cast<const int32_t*>(inputs), batch, nullptr));
  const int64_t N = batch * config_.context;
  compute_->CrossEntropyFused(logits_.data<float>(), targets, nullptr, N, config_.vocab, 1.0f,
                              loss);
  return Status::Ok();
}

Status Gpt::LogitsToHost(const float* params, const void* inputs, int64_t batch, float* logits) {
  p_ = params;
  prec_ = nullptr;
  COHORT_RETURN_IF_ERROR(Forward(params, static_cast<const int32_t*>(inputs), batch, nullptr));
  return compute_->CopyToHost(logits, logits_.raw(),
                              static_cast<size_t>(batch * config_.context * config_.vocab) * 4);
}

Result<std::vector<std::vector<float>>> Gpt::GatherFull(const float* params) {
  // Every rank places its part into a zeroed whole (replicated tensors from
  // tensor rank 0 only) and the group sums them: each element comes from
  // exactly one rank, so the sum is exact.
  std::vector<float> local(static_cast<size_t>(num_params_));
  COHORT_RETURN_IF_ERROR(compute_->CopyToHost(local.data(), params, local.size() * 4));
  std::vector<float> full(static_cast<size_t>(full_num_params_), 0.0f);
  for (const Tensor2& t : tensors_) {
    const bool whole_here =
        t.split == LayerSplit::kReplicated || (t.split == LayerSplit::kRow && t.cols == 1);
    if (whole_here && tp_rank_ != 0) continue;
    MapTensor(t, local.data(), full.data(), true);
  }
  if (tp_size_ > 1) {
    COHORT_ASSIGN_OR_RETURN(Tensor dev, compute_->Alloc({full_num_params_}, DType::kF32));
    compute_->CopyToDevice(dev.raw(), full.data(), full.size() * 4);
    COHORT_RETURN_IF_ERROR(compute_->Sync());
    COHORT_RETURN_IF_ERROR(
        tp_->AllReduce(dev.raw(), dev.raw(), full.size(), DType::kF32, ReduceOp::kSum)
            .WithContext("gathering the tensor-parallel parameters"));
    COHORT_RETURN_IF_ERROR(compute_->CopyToHost(full.data(), dev.raw(), full.size() * 4));
  }
  std::vector<std::vector<float>> out;
  for (const Tensor2& t : tensors_) {
    const float* at = full.data() + t.full_offset;
    out.emplace_back(at, at + t.rows * t.cols);
  }
  return out;
}

}  // namespace cohort
