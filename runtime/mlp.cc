#include "runtime/mlp.h"

#include <cmath>
#include <cstring>

#include "core/clock.h"
#include "runtime/rng.h"

namespace cohort {
namespace {
constexpr uint64_t kStreamInit = 100;

LayerSplit SplitOf(size_t l, size_t num_layers, int tp_size) {
  if (tp_size <= 1) return LayerSplit::kReplicated;
  if (l % 2 == 1) return LayerSplit::kRow;
  return l + 1 < num_layers ? LayerSplit::kColumn : LayerSplit::kReplicated;
}
}  // namespace

Status Mlp::CheckTensorParallel(const std::vector<int64_t>& layers, int tp_size) {
  if (tp_size < 1)
    return InvalidArgument("parallel.tensor must be at least 1, not " + std::to_string(tp_size));
  if (tp_size == 1) return Status::Ok();
  const size_t n = layers.size() - 1;
  if (n < 2) {
    return InvalidArgument(
        "parallel.tensor " + std::to_string(tp_size) +
        " needs at least two linear layers to split (column- then row-parallel); "
        "model.layers has " +
        std::to_string(n));
  }
  for (size_t l = 0; l < n; ++l) {
    if (SplitOf(l, n, tp_size) == LayerSplit::kColumn && layers[l + 1] % tp_size != 0) {
      return InvalidArgument("parallel.tensor " + std::to_string(tp_size) +
                             " does not divide the width " + std::to_string(layers[l + 1]) +
                             " of hidden layer " + std::to_string(l + 1) +
                             " (model.layers); use a tensor size that divides every split width");
    }
  }
  return Status::Ok();
}

Mlp::Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp,
         Compute* compute)
    : Mlp(std::move(layers), activation, tp, tp ? tp->size() : 1, tp ? tp->rank() : 0, compute) {}

Mlp::Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp, int tp_size,
         int tp_rank, Compute* compute)
    : layers_(std::move(layers)),
      activation_(activation),
      tp_(tp),
      tp_size_(tp_size),
      tp_rank_(tp_rank),
      compute_(compute != nullptr ? compute : &HostCompute()) {
  BuildLayout();
}

Mlp Mlp::Layout(std::vector<int64_t> layers, int tp_size, int tp_rank) {
  return Mlp(std::move(layers), kernels::Activation::kRelu, nullptr, tp_size, tp_rank, nullptr);
}

void Mlp::LocalToFull(const float* local, float* full) const {
  for (const Layer& L : layer_) {
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      std::memcpy(full + L.w_full_offset + (row0 + i) * L.out + col0,
                  local + L.w_offset + i * L.out_local, static_cast<size_t>(L.out_local) * 4);
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    std::memcpy(full + L.w_full_offset + L.in * L.out + col0, local + L.b_offset,
                static_cast<size_t>(b_local) * 4);
  }
}

void Mlp::FullToLocal(const float* full, float* local) const {
  for (const Layer& L : layer_) {
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      std::memcpy(local + L.w_offset + i * L.out_local,
                  full + L.w_full_offset + (row0 + i) * L.out + col0,
                  static_cast<size_t>(L.out_local) * 4);
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    std::memcpy(local + L.b_offset, full + L.w_full_offset + L.in * L.out + col0,
                static_cast<size_t>(b_local) * 4);
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
    info_.push_back({"layers." + std::to_string(l) + ".weight",
                     num_params_,
                     {L.in_local, L.out_local},
                     {L.in, L.out},
                     L.split,
                     false,
                     /*saved_transposed=*/true});
    num_params_ += L.in_local * L.out_local;
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    L.b_offset = num_params_;
    info_.push_back(
        {"layers." + std::to_string(l) + ".bias", num_params_, {b_local}, {L.out}, L.split, true});
    num_params_ += b_local;
    layer_.push_back(L);
  }
}

void Mlp::Init(float* params, uint64_t seed) const {
  for (const Layer& L : layer_) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(L.in));
    auto value = [&](int64_t full_offset) {
      return UniformFloat(HashCombine(seed, kStreamInit, static_cast<uint64_t>(full_offset)),
                          -bound, bound);
    };
    const int64_t row0 = L.split == LayerSplit::kRow ? tp_rank_ * L.in_local : 0;
    const int64_t col0 = L.split == LayerSplit::kColumn ? tp_rank_ * L.out_local : 0;
    for (int64_t i = 0; i < L.in_local; ++i) {
      for (int64_t j = 0; j < L.out_local; ++j) {
        params[L.w_offset + i * L.out_local + j] =
            value(L.w_full_offset + (row0 + i) * L.out + (col0 + j));
      }
    }
    const int64_t b_local = L.split == LayerSplit::kColumn ? L.out_local : L.out;
    for (int64_t j = 0; j < b_local; ++j) {
      params[L.b_offset + j] = value(L.w_full_offset + L.in * L.out + col0 + j);
    }
  }
}

Status Mlp::Reserve(int64_t batch) {
  if (!loss_.defined()) {
    COHORT_ASSIGN_OR_RETURN(loss_, compute_->Alloc({1}, DType::kF32));
  }
  if (batch <= reserved_batch_) return Status::Ok();
  const size_t n = layer_.size();
  z_.assign(n, {});
  int64_t widest = 0;
  for (size_t l = 0; l < n; ++l) {
    COHORT_ASSIGN_OR_RETURN(z_[l], compute_->Alloc({batch * layer_[l].out_local}, DType::kF32));
    widest = std::max({widest, layer_[l].out_local, layer_[l].in_local});
  }
  COHORT_ASSIGN_OR_RETURN(probs_, compute_->Alloc({batch * layers_.back()}, DType::kF32));
  COHORT_ASSIGN_OR_RETURN(dz_, compute_->Alloc({batch * widest}, DType::kF32));
  COHORT_ASSIGN_OR_RETURN(da_, compute_->Alloc({batch * widest}, DType::kF32));
  reserved_batch_ = batch;
  return Status::Ok();
}

Status Mlp::Reserve16(int64_t batch) {
  if (batch <= reserved16_batch_) return Status::Ok();
  const size_t n = layer_.size();
  COHORT_ASSIGN_OR_RETURN(x16_, compute_->Alloc({batch * layers_.front()}, DType::kBF16));
  a16_.assign(n, {});
  int64_t widest = 0;
  for (size_t l = 0; l < n; ++l) {
    if (l + 1 < n) {
      COHORT_ASSIGN_OR_RETURN(a16_[l],
                              compute_->Alloc({batch * layer_[l].out_local}, DType::kBF16));
    }
    widest = std::max(widest, layer_[l].out_local);
  }
  COHORT_ASSIGN_OR_RETURN(dz16_, compute_->Alloc({batch * widest}, DType::kBF16));
  reserved16_batch_ = batch;
  return Status::Ok();
}

Status Mlp::TensorAllReduce(float* buf, int64_t n, StepTimes* times) {
  const double t0 = MonotonicSeconds();
  // The collective reads what the compute produced: wait for it (nothing
  // to wait for on the CPU).
  COHORT_RETURN_IF_ERROR(compute_->Sync().WithContext("before a tensor-parallel all-reduce"));
  Status s = tp_->AllReduce(buf, buf, static_cast<size_t>(n), DType::kF32, ReduceOp::kSum);
  if (times) times->tensor_comm_s += MonotonicSeconds() - t0;
  return s.WithContext("tensor-parallel all-reduce");
}

Status Mlp::Forward(const float* params, const float* x, int64_t batch, StepTimes* times) {
  COHORT_RETURN_IF_ERROR(Reserve(batch));
  const size_t n = layer_.size();
  if (reserved_a_batch_ < batch) {  // fp32 activations are only kept by this path
    a_.assign(n, {});
    for (size_t l = 0; l + 1 < n; ++l) {
      COHORT_ASSIGN_OR_RETURN(a_[l], compute_->Alloc({batch * layer_[l].out_local}, DType::kF32));
    }
    reserved_a_batch_ = batch;
  }
  const float* in = x;
  for (size_t l = 0; l < n; ++l) {
    const Layer& L = layer_[l];
    float* z = z_[l].data<float>();
    compute_->Gemm(false, false, batch, L.out_local, L.in_local, 1.0f, in, L.in_local,
                   params + L.w_offset, L.out_local, 0.0f, z, L.out_local);
    // Row-parallel: sum the partial products before the (replicated) bias.
    if (L.split == LayerSplit::kRow)
      COHORT_RETURN_IF_ERROR(TensorAllReduce(z, batch * L.out_local, times));
    // z keeps the pre-activation (GELU's backward needs it); a is the output.
    compute_->BiasActForward(z, params + L.b_offset, z, batch, L.out_local,
                             kernels::Activation::kNone);
    const bool last = l + 1 == n;
    if (!last) compute_->ActForward(z, a_[l].data<float>(), batch * L.out_local, activation_);
    in = last ? z : a_[l].data<float>();
  }
  return Status::Ok();
}

Result<double> Mlp::Loss(const float* params, const float* x, const int32_t* labels,
                         int64_t batch) {
  COHORT_RETURN_IF_ERROR(Reserve(batch));
  float* loss = loss_.data<float>();
  COHORT_RETURN_IF_ERROR(LossTo(params, x, labels, batch, loss));
  COHORT_ASSIGN_OR_RETURN(float v, compute_->ReadFloat(loss));
  return static_cast<double>(v);
}

Status Mlp::LogitsToHost(const float* params, const void* inputs, int64_t batch, float* logits) {
  COHORT_RETURN_IF_ERROR(Forward(params, static_cast<const float*>(inputs), batch, nullptr));
  return compute_->CopyToHost(logits, z_.back().raw(),
                              static_cast<size_t>(batch * layers_.back()) * 4);
}

Status Mlp::LossTo(const float* params, const void* inputs, const int32_t* targets, int64_t batch,
                   float* loss) {
  COHORT_RETURN_IF_ERROR(Forward(params, static_cast<const float*>(inputs), batch, nullptr));
  compute_->SoftmaxCrossEntropyForward(z_.back().data<float>(), targets, probs_.data<float>(),
                                       batch, layers_.back(), loss);
  return Status::Ok();
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
  COHORT_RETURN_IF_ERROR(Reserve(batch));
  float* loss = loss_.data<float>();
  COHORT_RETURN_IF_ERROR(
      ForwardBackwardTo(params, x, labels, batch, grads, loss, times, on_layer_grads, precision));
  COHORT_ASSIGN_OR_RETURN(float v, compute_->ReadFloat(loss));
  return static_cast<double>(v);
}

Status Mlp::ForwardBackwardTo(const float* params, const float* x, const int32_t* labels,
                              int64_t batch, float* grads, float* loss, StepTimes* times,
                              const std::function<void(int)>* on_layer_grads,
                              const Precision* precision) {
  if (precision != nullptr && precision->compute != DType::kF32) {
    const Precision& p = *precision;
    COHORT_CHECK(p.params16 != nullptr) << "mixed precision without the 16-bit weights";
    const double t0 = MonotonicSeconds();
    COHORT_RETURN_IF_ERROR(Forward16(params, p, x, batch, times));
    compute_->SoftmaxCrossEntropyForward(z_.back().data<float>(), labels, probs_.data<float>(),
                                         batch, layers_.back(), loss);
    const double t1 = MonotonicSeconds();
    COHORT_RETURN_IF_ERROR(Backward16(p, labels, batch, grads, times, on_layer_grads));
    const double t2 = MonotonicSeconds();
    if (times) {
      times->forward_s += t1 - t0;
      times->backward_s += t2 - t1;
    }
    return Status::Ok();
  }
  const double t0 = MonotonicSeconds();
  COHORT_RETURN_IF_ERROR(Forward(params, x, batch, times));
  compute_->SoftmaxCrossEntropyForward(z_.back().data<float>(), labels, probs_.data<float>(), batch,
                                       layers_.back(), loss);
  const double t1 = MonotonicSeconds();
  float* dz = dz_.data<float>();
  float* da = da_.data<float>();
  compute_->SoftmaxCrossEntropyBackward(probs_.data<float>(), labels, dz, batch, layers_.back(),
                                        1.0f / static_cast<float>(batch));
  for (size_t li = layer_.size(); li-- > 0;) {
    const Layer& L = layer_[li];
    const float* in = li == 0 ? x : a_[li - 1].data<float>();
    // dW = a^T dz ; db = colsum(dz)
    compute_->Gemm(true, false, L.in_local, L.out_local, batch, 1.0f, in, L.in_local, dz,
                   L.out_local, 0.0f, grads + L.w_offset, L.out_local);
    compute_->BiasGrad(dz, grads + L.b_offset, batch, L.out_local);
    if (on_layer_grads) (*on_layer_grads)(static_cast<int>(li));
    if (li == 0) break;  // no gradient for the input
    // da = dz W^T ; for a column-parallel layer each rank holds a partial sum
    // over its output columns of the (replicated) input's gradient.
    compute_->Gemm(false, true, batch, L.in_local, L.out_local, 1.0f, dz, L.out_local,
                   params + L.w_offset, L.out_local, 0.0f, da, L.in_local);
    if (L.split == LayerSplit::kColumn)
      COHORT_RETURN_IF_ERROR(TensorAllReduce(da, batch * L.in_local, times));
    compute_->ActBackward(z_[li - 1].data<float>(), da, dz, batch * L.in_local, activation_);
  }
  const double t2 = MonotonicSeconds();
  if (times) {
    times->forward_s += t1 - t0;
    times->backward_s += t2 - t1;
  }
  return Status::Ok();
}

Status Mlp::Forward16(const float* params, const Precision& p, const float* x, int64_t batch,
                      StepTimes* times) {
  COHORT_RETURN_IF_ERROR(Reserve(batch));
  COHORT_RETURN_IF_ERROR(Reserve16(batch));
  const DType t = p.compute;
  const size_t n = layer_.size();
  float* da = da_.data<float>();
  compute_->CastFromFloat(x, t, x16_.raw(), batch * layers_.front(), 1.0f);
  const void* in = x16_.raw();
  for (size_t l = 0; l < n; ++l) {
    const Layer& L = layer_[l];
    float* z = z_[l].data<float>();
    compute_->GemmMixed(false, false, batch, L.out_local, L.in_local, 1.0f, t, in, L.in_local,
                        p.params16 + L.w_offset, L.out_local, 0.0f, DType::kF32, z, L.out_local);
    if (L.split == LayerSplit::kRow)
      COHORT_RETURN_IF_ERROR(TensorAllReduce(z, batch * L.out_local, times));
    // Bias from the fp32 master copy, added in fp32; z stays fp32 for the
    // activation's backward.
    compute_->BiasActForward(z, params + L.b_offset, z, batch, L.out_local,
                             kernels::Activation::kNone);
    if (l + 1 == n) break;
    // The activation goes through fp32 scratch (da_) into its 16-bit store,
    // the next GEMM's input.
    compute_->ActForward(z, da, batch * L.out_local, activation_);
    compute_->CastFromFloat(da, t, a16_[l].raw(), batch * L.out_local, 1.0f);
    in = a16_[l].raw();
  }
  return Status::Ok();
}

Status Mlp::Backward16(const Precision& p, const int32_t* labels, int64_t batch, float* grads,
                       StepTimes* times, const std::function<void(int)>* on_layer_grads) {
  const DType t = p.compute;
  float* dz = dz_.data<float>();
  float* da = da_.data<float>();
  void* dz16 = dz16_.raw();
  compute_->SoftmaxCrossEntropyBackward(probs_.data<float>(), labels, dz, batch, layers_.back(),
                                        p.loss_scale / static_cast<float>(batch));
  for (size_t li = layer_.size(); li-- > 0;) {
    const Layer& L = layer_[li];
    const void* in = li == 0 ? x16_.raw() : a16_[li - 1].raw();
    // The output gradient rounded to 16 bits once, for both GEMMs (with
    // fp16, loss scaling keeps it above the subnormal range; an overflow
    // here becomes inf in the gradients, which the loss scaler catches).
    compute_->CastFromFloat(dz, t, dz16, batch * L.out_local, 1.0f);
    compute_->GemmMixed(true, false, L.in_local, L.out_local, batch, 1.0f, t, in, L.in_local, dz16,
                        L.out_local, 0.0f, DType::kF32, grads + L.w_offset, L.out_local);
    compute_->BiasGrad(dz, grads + L.b_offset, batch, L.out_local);
    if (on_layer_grads) (*on_layer_grads)(static_cast<int>(li));
    if (li == 0) break;
    compute_->GemmMixed(false, true, batch, L.in_local, L.out_local, 1.0f, t, dz16, L.out_local,
                        p.params16 + L.w_offset, L.out_local, 0.0f, DType::kF32, da, L.in_local);
    if (L.split == LayerSplit::kColumn)
      COHORT_RETURN_IF_ERROR(TensorAllReduce(da, batch * L.in_local, times));
    compute_->ActBackward(z_[li - 1].data<float>(), da, dz, batch * L.in_local, activation_);
  }
  return Status::Ok();
}

Result<std::vector<std::vector<float>>> Mlp::GatherFull(const float* params) {
  std::vector<std::vector<float>> out;
  COHORT_RETURN_IF_ERROR(compute_->Sync().WithContext("before gathering the parameters"));
  Tensor
      parts_dev;  // the tensor group's parts of one tensor, on the compute (sized for the largest)
  for (const ParamInfo& p : info_) {
    int64_t local = 1, full = 1;
    for (int64_t d : p.shape) local *= d;
    for (int64_t d : p.full_shape) full *= d;
    std::vector<float> whole(static_cast<size_t>(full));
    if (local == full) {
      COHORT_RETURN_IF_ERROR(
          compute_->CopyToHost(whole.data(), params + p.offset, static_cast<size_t>(full) * 4));
      out.push_back(std::move(whole));
      continue;
    }
    if (parts_dev.numel() < local * tp_size_) {
      COHORT_ASSIGN_OR_RETURN(parts_dev, compute_->Alloc({local * tp_size_}, DType::kF32));
      COHORT_RETURN_IF_ERROR(compute_->Sync());
    }
    COHORT_RETURN_IF_ERROR(tp_->AllGather(params + p.offset, parts_dev.raw(),
                                          static_cast<size_t>(local), DType::kF32));
    std::vector<float> parts(static_cast<size_t>(local * tp_size_));
    COHORT_RETURN_IF_ERROR(compute_->CopyToHost(parts.data(), parts_dev.raw(), parts.size() * 4));
    if (p.split == LayerSplit::kRow || p.is_bias) {
      whole = std::move(parts);  // row blocks (or bias slices) concatenate in rank order
    } else {                     // column blocks: interleave each row's slices
      const int64_t rows = p.full_shape[0], cols = p.full_shape[1], w = p.shape[1];
      for (int r = 0; r < tp_size_; ++r)
        for (int64_t i = 0; i < rows; ++i)
          std::memcpy(whole.data() + i * cols + r * w, parts.data() + r * local + i * w,
                      static_cast<size_t>(w) * 4);
    }
    out.push_back(std::move(whole));
  }
  return out;
}

}  // namespace cohort
