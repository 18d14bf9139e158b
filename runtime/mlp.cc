#include "runtime/mlp.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "runtime/rng.h"

namespace cohort {
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
constexpr uint64_t kStreamInit = 100;

LayerSplit SplitOf(size_t l, size_t num_layers, int tp_size) {
  if (tp_size <= 1) return LayerSplit::kReplicated;
  if (l % 2 == 1) return LayerSplit::kRow;
  return l + 1 < num_layers ? LayerSplit::kColumn : LayerSplit::kReplicated;
}
}  // namespace

Status Mlp::CheckTensorParallel(const std::vector<int64_t>& layers, int tp_size) {
  if (tp_size < 1) return InvalidArgument("parallel.tensor must be at least 1, not " + std::to_string(tp_size));
  if (tp_size == 1) return Status::Ok();
  const size_t n = layers.size() - 1;
  if (n < 2) {
    return InvalidArgument("parallel.tensor " + std::to_string(tp_size) +
                           " needs at least two linear layers to split (column- then row-parallel); "
                           "model.layers has " + std::to_string(n));
  }
  for (size_t l = 0; l < n; ++l) {
    if (SplitOf(l, n, tp_size) == LayerSplit::kColumn && layers[l + 1] % tp_size != 0) {
      return InvalidArgument("parallel.tensor " + std::to_string(tp_size) + " does not divide the width " +
                             std::to_string(layers[l + 1]) + " of hidden layer " + std::to_string(l + 1) +
                             " (model.layers); use a tensor size that divides every split width");
    }
  }
  return Status::Ok();
}

Mlp::Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp)
    : Mlp(std::move(layers), activation, tp, tp ? tp->size() : 1, tp ? tp->rank() : 0) {}

Mlp::Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp, int tp_size, int tp_rank)
    : layers_(std::move(layers)), activation_(activation), tp_(tp), tp_size_(tp_size), tp_rank_(tp_rank) {
  BuildLayout();
}

Mlp Mlp::Layout(std::vector<int64_t> layers, int tp_size, int tp_rank) {
  return Mlp(std::move(layers), kernels::Activation::kRelu, nullptr, tp_size, tp_rank);
}

void Mlp::LocalToFull(const float* local, float* full) const {
  for (const Layer& L : layer_) {
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      std::memcpy(full + L.w_full_offset + (row0 + i) * L.out + col0, local + L.w_offset + i * L.out_local,
                  static_cast<size_t>(L.out_local) * 4);
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    std::memcpy(full + L.w_full_offset + L.in * L.out + col0, local + L.b_offset, static_cast<size_t>(b_local) * 4);
  }
}

void Mlp::FullToLocal(const float* full, float* local) const {
  for (const Layer& L : layer_) {
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      std::memcpy(local + L.w_offset + i * L.out_local, full + L.w_full_offset + (row0 + i) * L.out + col0,
                  static_cast<size_t>(L.out_local) * 4);
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    std::memcpy(local + L.b_offset, full + L.w_full_offset + L.in * L.out + col0, static_cast<size_t>(b_local) * 4);
  }
}

void Mlp::BuildLayout() {
  COHORT_CHECK(layers_.size() >= 2) << "an MLP needs at least input and output sizes";
  COHORT_CHECK(CheckTensorParallel(layers_, tp_size_).ok()) << "unchecked tensor-parallel split";
  COHORT_CHECK(tp_rank_ >= 0 && tp_rank_ < tp_size_) << "tensor rank out of range";
  const size_t n = layers_.size() - 1;
  for (size_t l = 0; l < n; ++l) {
    Layer L;
    L.in = layers_[l];
    L.out = layers_[l + 1];
    L.split = SplitOf(l, n, tp_size_);
    L.in_local = L.split == LayerSplit::kRow ? L.in / tp_size_ : L.in;
    L.out_local = L.split == LayerSplit::kColumn ? L.out / tp_size_ : L.out;
    L.w_full_offset = full_num_params_;
    full_num_params_ += L.in * L.out + L.out;
    L.w_offset = num_params_;
    info_.push_back({"layers." + std::to_string(l) + ".weight", num_params_, {L.in_local, L.out_local},
                     {L.in, L.out}, L.split, false});
    num_params_ += L.in_local * L.out_local;
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    L.b_offset = num_params_;
    info_.push_back({"layers." + std::to_string(l) + ".bias", num_params_, {b_local}, {L.out}, L.split, true});
    num_params_ += b_local;
    layer_.push_back(L);
  }
}

void Mlp::Init(float* params, uint64_t seed) const {
  for (const Layer& L : layer_) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(L.in));
    auto value = [&](int64_t full_offset) {
      return UniformFloat(HashCombine(seed, kStreamInit, static_cast<uint64_t>(full_offset)), -bound, bound);
    };
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      for (int64_t j = 0; j < L.out_local; ++j) {
        params[L.w_offset + i * L.out_local + j] = value(L.w_full_offset + (row0 + i) * L.out + (col0 + j));
      }
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    for (int64_t j = 0; j < b_local; ++j) {
      params[L.b_offset + j] = value(L.w_full_offset + L.in * L.out + col0 + j);
    }
  }
}

void Mlp::Reserve(int64_t batch) {
  if (batch <= reserved_batch_) return;
  const size_t n = layer_.size();
  z_.assign(n, {});
  a_.assign(n, {});
  int64_t widest = 0;
  for (size_t l = 0; l < n; ++l) {
    z_[l].resize(static_cast<size_t>(batch * layer_[l].out_local));
    widest = std::max({widest, layer_[l].out_local, layer_[l].in_local});
  }
  probs_.resize(static_cast<size_t>(batch * layers_.back()));
  dz_.resize(static_cast<size_t>(batch * widest));
  da_.resize(static_cast<size_t>(batch * widest));
  reserved_batch_ = batch;
}

void Mlp::Reserve16(int64_t batch) {
  if (batch <= reserved16_batch_) return;
  const size_t n = layer_.size();
  x16_.resize(static_cast<size_t>(batch * layers_.front()));
  a16_.assign(n, {});
  int64_t widest = 0;
  for (size_t l = 0; l < n; ++l) {
    if (l + 1 < n) a16_[l].resize(static_cast<size_t>(batch * layer_[l].out_local));
    widest = std::max(widest, layer_[l].out_local);
  }
  dz16_.resize(static_cast<size_t>(batch * widest));
  reserved16_batch_ = batch;
}

Status Mlp::TensorAllReduce(float* buf, int64_t n, StepTimes* times) {
  const double t0 = Now();
  Status s = tp_->AllReduce(buf, buf, static_cast<size_t>(n), DType::kF32, ReduceOp::kSum);
  if (times) times->tensor_comm_s += Now() - t0;
  return s.WithContext("tensor-parallel all-reduce");
}

Status Mlp::Forward(const float* params, const float* x, int64_t batch, StepTimes* times) {
  Reserve(batch);
  const size_t n = layer_.size();
  const float* in = x;
  for (size_t l = 0; l < n; ++l) {
    const Layer& L = layer_[l];
    float* z = z_[l].data();
    kernels::Gemm(false, false, batch, L.out_local, L.in_local, 1.0f, in, L.in_local, params + L.w_offset,
                  L.out_local, 0.0f, z, L.out_local);
    // Row-parallel: sum the partial products before the (replicated) bias.
    if (L.split == LayerSplit::kRow) COHORT_RETURN_IF_ERROR(TensorAllReduce(z, batch * L.out_local, times));
    // z keeps the pre-activation (GELU's backward needs it); a is the output.
    kernels::BiasActForward(z, params + L.b_offset, z, batch, L.out_local, kernels::Activation::kNone);
    const bool last = l + 1 == n;
    // fp32 activations are only kept by this path (Reserve does not size them).
    const size_t a_size = static_cast<size_t>(batch * L.out_local);
    if (!last && a_[l].size() < a_size) a_[l].resize(a_size);
    if (!last) kernels::ActForward(z, a_[l].data(), batch * L.out_local, activation_);
    in = last ? z : a_[l].data();
  }
  return Status::Ok();
}

Result<double> Mlp::Loss(const float* params, const float* x, const int32_t* labels, int64_t batch) {
  COHORT_RETURN_IF_ERROR(Forward(params, x, batch, nullptr));
  return kernels::SoftmaxCrossEntropyForward(z_.back().data(), labels, probs_.data(), batch, layers_.back());
}

std::vector<std::pair<int64_t, int64_t>> Mlp::LayerRanges() const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t l = 0; l < layer_.size(); ++l) {
    const int64_t end = l + 1 < layer_.size() ? layer_[l + 1].w_offset : num_params_;
    out.emplace_back(layer_[l].w_offset, end - layer_[l].w_offset);
  }
  return out;
}

Result<double> Mlp::ForwardBackward(const float* params, const float* x, const int32_t* labels,
                                    int64_t batch, float* grads, StepTimes* times,
                                    const std::function<void(int)>* on_layer_grads,
                                    const Precision* precision) {
  if (precision != nullptr && precision->compute != DType::kF32) {
    const Precision& p = *precision;
    COHORT_CHECK(p.params16 != nullptr) << "mixed precision without the 16-bit weights";
    const double t0 = Now();
    COHORT_RETURN_IF_ERROR(Forward16(params, p, x, batch, times));
    const double loss = kernels::SoftmaxCrossEntropyForward(z_.back().data(), labels, probs_.data(), batch,
                                                            layers_.back());
    last_loss_ = loss;
    const double t1 = Now();
    COHORT_RETURN_IF_ERROR(Backward16(p, labels, batch, grads, times, on_layer_grads));
    const double t2 = Now();
    if (times) {
      times->forward_s += t1 - t0;
      times->backward_s += t2 - t1;
    }
    return loss;
  }
  const double t0 = Now();
  COHORT_RETURN_IF_ERROR(Forward(params, x, batch, times));
  const double loss = kernels::SoftmaxCrossEntropyForward(z_.back().data(), labels, probs_.data(), batch,
                                                          layers_.back());
  last_loss_ = loss;
  const double t1 = Now();
  kernels::SoftmaxCrossEntropyBackward(probs_.data(), labels, dz_.data(), batch, layers_.back(),
                                       1.0f / static_cast<float>(batch));
  for (size_t li = layer_.size(); li-- > 0;) {
    const Layer& L = layer_[li];
    const float* in = li == 0 ? x : a_[li - 1].data();
    // dW = a^T dz ; db = colsum(dz)
    kernels::Gemm(true, false, L.in_local, L.out_local, batch, 1.0f, in, L.in_local, dz_.data(), L.out_local,
                  0.0f, grads + L.w_offset, L.out_local);
    kernels::BiasGrad(dz_.data(), grads + L.b_offset, batch, L.out_local);
    if (on_layer_grads) (*on_layer_grads)(static_cast<int>(li));
    if (li == 0) break;  // no gradient for the input
    // da = dz W^T ; for a column-parallel layer each rank holds a partial sum
    // over its output columns of the (replicated) input's gradient.
    kernels::Gemm(false, true, batch, L.in_local, L.out_local, 1.0f, dz_.data(), L.out_local,
                  params + L.w_offset, L.out_local, 0.0f, da_.data(), L.in_local);
    if (L.split == LayerSplit::kColumn) COHORT_RETURN_IF_ERROR(TensorAllReduce(da_.data(), batch * L.in_local, times));
    kernels::ActBackward(z_[li - 1].data(), da_.data(), dz_.data(), batch * L.in_local, activation_);
  }
  const double t2 = Now();
  if (times) {
    times->forward_s += t1 - t0;
    times->backward_s += t2 - t1;
  }
  return loss;
}

Status Mlp::Forward16(const float* params, const Precision& p, const float* x, int64_t batch, StepTimes* times) {
  Reserve(batch);
  Reserve16(batch);
  const DType t = p.compute;
  const size_t n = layer_.size();
  kernels::CastFromFloat(x, t, x16_.data(), batch * layers_.front(), 1.0f);
  const uint16_t* in = x16_.data();
  for (size_t l = 0; l < n; ++l) {
    const Layer& L = layer_[l];
    float* z = z_[l].data();
    kernels::GemmMixed(false, false, batch, L.out_local, L.in_local, 1.0f, t, in, L.in_local,
                       p.params16 + L.w_offset, L.out_local, 0.0f, DType::kF32, z, L.out_local);
    if (L.split == LayerSplit::kRow) COHORT_RETURN_IF_ERROR(TensorAllReduce(z, batch * L.out_local, times));
    // Bias from the fp32 master copy, added in fp32; z stays fp32 for the
    // activation's backward.
    kernels::BiasActForward(z, params + L.b_offset, z, batch, L.out_local, kernels::Activation::kNone);
    if (l + 1 == n) break;
    // The activation goes through fp32 scratch (da_) into its 16-bit store,
    // the next GEMM's input.
    kernels::ActForward(z, da_.data(), batch * L.out_local, activation_);
    kernels::CastFromFloat(da_.data(), t, a16_[l].data(), batch * L.out_local, 1.0f);
    in = a16_[l].data();
  }
  return Status::Ok();
}

Status Mlp::Backward16(const Precision& p, const int32_t* labels, int64_t batch, float* grads,
                       StepTimes* times, const std::function<void(int)>* on_layer_grads) {
  const DType t = p.compute;
  kernels::SoftmaxCrossEntropyBackward(probs_.data(), labels, dz_.data(), batch, layers_.back(),
                                       p.loss_scale / static_cast<float>(batch));
  for (size_t li = layer_.size(); li-- > 0;) {
    const Layer& L = layer_[li];
    const uint16_t* in = li == 0 ? x16_.data() : a16_[li - 1].data();
    // The output gradient rounded to 16 bits once, for both GEMMs (with
    // fp16, loss scaling keeps it above the subnormal range; an overflow
    // here becomes inf in the gradients, which the loss scaler catches).
    kernels::CastFromFloat(dz_.data(), t, dz16_.data(), batch * L.out_local, 1.0f);
    kernels::GemmMixed(true, false, L.in_local, L.out_local, batch, 1.0f, t, in, L.in_local, dz16_.data(),
                       L.out_local, 0.0f, DType::kF32, grads + L.w_offset, L.out_local);
    kernels::BiasGrad(dz_.data(), grads + L.b_offset, batch, L.out_local);
    if (on_layer_grads) (*on_layer_grads)(static_cast<int>(li));
    if (li == 0) break;
    kernels::GemmMixed(false, true, batch, L.in_local, L.out_local, 1.0f, t, dz16_.data(), L.out_local,
                       p.params16 + L.w_offset, L.out_local, 0.0f, DType::kF32, da_.data(), L.in_local);
    if (L.split == LayerSplit::kColumn) COHORT_RETURN_IF_ERROR(TensorAllReduce(da_.data(), batch * L.in_local, times));
    kernels::ActBackward(z_[li - 1].data(), da_.data(), dz_.data(), batch * L.in_local, activation_);
  }
  return Status::Ok();
}

Result<std::vector<std::vector<float>>> Mlp::GatherFull(const float* params) {
  std::vector<std::vector<float>> out;
  for (const ParamInfo& p : info_) {
    int64_t local = 1, full = 1;
    for (int64_t d : p.shape) local *= d;
    for (int64_t d : p.full_shape) full *= d;
    std::vector<float> whole(static_cast<size_t>(full));
    if (local == full) {
      std::memcpy(whole.data(), params + p.offset, static_cast<size_t>(full) * 4);
      out.push_back(std::move(whole));
      continue;
    }
    std::vector<float> parts(static_cast<size_t>(local * tp_size_));
    COHORT_RETURN_IF_ERROR(tp_->AllGather(params + p.offset, parts.data(), static_cast<size_t>(local), DType::kF32));
    if (p.split == LayerSplit::kRow || p.is_bias) {
      whole = std::move(parts);  // row blocks (or bias slices) concatenate in rank order
    } else {                     // column blocks: interleave each row's slices
      const int64_t rows = p.full_shape[0], cols = p.full_shape[1], w = p.shape[1];
      for (int r = 0; r < tp_size_; ++r)
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(whole.data() + i * cols + r * w, parts.data() + r * local + i * w, static_cast<size_t>(w) * 4);
    }
    out.push_back(std::move(whole));
  }
  return out;
}

}  // namespace cohort
