#pragma once
// A multi-layer perceptron over one flat parameter buffer, optionally split
// across a tensor-parallel group (Megatron-style).
//
// Layer l maps a_l (batch x in_l) to z_l = a_l W_l + b_l with W_l stored
// row-major as (in_l x out_l) and b_l (out_l); hidden layers apply the
// activation, the last produces logits for softmax cross-entropy. Parameters
// live in one flat fp32 array, layer by layer [W_0, b_0, W_1, b_1, ...], and
// gradients share that layout, so one all-reduce (or a few buckets) covers
// them with no packing.
//
// Tensor parallelism over T ranks pairs the layers: layer 0 is
// column-parallel (each rank holds out_0/T output columns of W_0 and b_0 and
// produces its slice of the activation), layer 1 row-parallel (each rank holds
// the matching in_1/T rows of W_1; partial outputs are summed with one
// all-reduce, then the replicated bias is added), and so on. With an odd
// number of layers the last one is replicated. Every rank of the group sees
// the same batch. Forward costs one all-reduce per row-parallel layer and
// backward one per column-parallel layer after the first (Megatron's f/g).
//
// Memory: the parameters, gradients, inputs and labels passed in, and the
// activation workspace the Mlp owns, live on its Compute (the CPU unless
// given one); every pointer argument of ForwardBackward and Loss is device
// memory there. Tensor-parallel collectives run on device buffers, after the
// compute has finished producing them.
//
// An Mlp owns its activation workspace and is not thread-safe.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "core/status.h"
#include "core/tensor.h"
#include "kernels/cpu/kernels.h"
#include "runtime/compute.h"
#include "runtime/model.h"

namespace cohort {

class Mlp final : public Model {
 public:
  // `tp` is the tensor-parallel group (nullptr or size 1: no splitting).
  // The caller validates with CheckTensorParallel first; violating it aborts.
  // `compute` (not owned; null: HostCompute()) holds the workspace and runs the kernels.
  Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp = nullptr,
      Compute* compute = nullptr);
  // The layout of tensor rank `tp_rank` of `tp_size` without a communicator:
  // for mapping parameters between splits (checkpoints); it cannot run a
  // split forward pass.
  static Mlp Layout(std::vector<int64_t> layers, int tp_size, int tp_rank);

  // Copies this rank's part (num_params) into / out of the whole model's flat
  // layout (full_num_params, the layout of the unsplit model).
  void LocalToFull(const float* local, float* full) const override;
  void FullToLocal(const float* full, float* local) const override;

  // InvalidArgument when `tp_size` cannot split `layers` (a split width not
  // divisible by it, or fewer than two layers to pair).
  static Status CheckTensorParallel(const std::vector<int64_t>& layers, int tp_size);

  int64_t num_params() const override { return num_params_; }  // this rank's part
  int64_t full_num_params() const override { return full_num_params_; }
  const std::vector<ParamInfo>& params() const override { return info_; }
  const std::vector<int64_t>& layers() const { return layers_; }
  int64_t inputs() const { return layers_.front(); }
  int64_t classes() const { return layers_.back(); }
  int tp_size() const override { return tp_size_; }
  Compute& compute() const override { return *compute_; }
  SampleShape sample() const override {
    return {DType::kF32, inputs(), 1, static_cast<int32_t>(classes())};
  }
  bool SupportsPrecision(DType) const override { return true; }

  // Deterministic initialisation from `seed`, PyTorch nn.Linear's
  // U(-1/sqrt(in), 1/sqrt(in)) for weights and biases. Each element's value
  // depends on its place in the whole (unsplit) model, so every split of the
  // model starts from the same network. `params` is host memory.
  void Init(float* params, uint64_t seed) const override;

  // Forward and backward on a batch: returns the mean cross-entropy loss over
  // the batch (accumulated in double, rounded to fp32) and overwrites `grads` (num_params floats)
  // with the gradient of that mean. Labels must lie in [0, classes()). Fails only when a
  // tensor-parallel collective fails. `on_layer_grads` (may be null) is
  // called with l as soon as layer l's weight and bias gradients are final,
  // from the last layer down to 0, so their all-reduce can start early.
  // `precision` (may be null: fp32) selects mixed precision; its params16
  // must hold params rounded to its 16-bit type. Waits for the device to
  // return the loss; the trainer uses ForwardBackwardTo instead.
  Result<double> ForwardBackward(const float* params, const float* x, const int32_t* labels,
                                 int64_t batch, float* grads, StepTimes* times = nullptr,
                                 const std::function<void(int)>* on_layer_grads = nullptr,
                                 const Precision* precision = nullptr);
  // The same, writing the mean loss (fp32) to device memory `loss` before
  // any layer's gradients, and waiting for the device only before a
  // tensor-parallel all-reduce (on a GPU, `times` then measure the host's
  // enqueueing, and on_layer_grads fires when a layer's kernels are
  // enqueued: Compute::MarkReady orders readers after them).
  Status ForwardBackwardTo(const float* params, const float* x, const int32_t* labels,
                           int64_t batch, float* grads, float* loss, StepTimes* times = nullptr,
                           const std::function<void(int)>* on_layer_grads = nullptr,
                           const Precision* precision = nullptr);
  // (offset, count) of each layer's parameters (weight then bias) in the flat buffer.
  std::vector<std::pair<int64_t, int64_t>> LayerRanges() const override;
  // The mean loss only, computed in fp32 (waits for the device).
  Result<double> Loss(const float* params, const float* x, const int32_t* labels, int64_t batch);

  // Model: the inputs are fp32 features (batch x inputs()), one label each.
  Status ForwardBackwardTo(const float* params, const void* inputs, const int32_t* targets,
                           int64_t batch, float* grads, float* loss, StepTimes* times,
                           const std::function<void(int)>* on_layer_grads,
                           const Precision* precision) override {
    return ForwardBackwardTo(params, static_cast<const float*>(inputs), targets, batch, grads, loss,
                             times, on_layer_grads, precision);
  }
  Status LossTo(const float* params, const void* inputs, const int32_t* targets, int64_t batch,
                float* loss) override;
  Status LogitsToHost(const float* params, const void* inputs, int64_t batch,
                      float* logits) override;

  // Assembles the whole model's tensors from every rank's part (a collective
  // over the tensor-parallel group; `params` is device memory). Returns host
  // tensors in the order of params().
  Result<std::vector<std::vector<float>>> GatherFull(const float* params) override;

 private:
  Mlp(std::vector<int64_t> layers, kernels::Activation activation, Communicator* tp, int tp_size,
      int tp_rank, Compute* compute);
  void BuildLayout();
  struct Layer {
    int64_t in, out;              // full sizes
    int64_t in_local, out_local;  // this rank's
    LayerSplit split;
    int64_t w_offset, b_offset;  // into this rank's flat buffer
    int64_t w_full_offset;       // into the whole model's flat layout
  };
  Status Forward(const float* params, const float* x, int64_t batch, StepTimes* times);
  Status Reserve(int64_t batch);
  // The 16-bit twins of Forward and ForwardBackward's backward half.
  Status Forward16(const float* params, const Precision& p, const float* x, int64_t batch,
                   StepTimes* times);
  Status Backward16(const Precision& p, const int32_t* labels, int64_t batch, float* grads,
                    StepTimes* times, const std::function<void(int)>* on_layer_grads);
  Status Reserve16(int64_t batch);
  Status TensorAllReduce(float* buf, int64_t n, StepTimes* times);

  std::vector<int64_t> layers_;
  kernels::Activation activation_;
  Communicator* tp_;
  int tp_size_ = 1, tp_rank_ = 0;
  std::vector<Layer> layer_;
  std::vector<ParamInfo> info_;
  int64_t num_params_ = 0, full_num_params_ = 0;
  int64_t reserved_batch_ = 0;
  Compute* compute_;
  // Workspace on the compute: z_[l] pre-activations (batch x out_local);
  // a_[l] activations (inputs of layer l+1; fp32 path only); probs_,
  // gradient scratch and the loss (one float).
  std::vector<Tensor> z_, a_;
  Tensor probs_, dz_, da_, loss_;
  int64_t reserved_a_batch_ = 0;
  // Mixed precision workspace (sized on first use): x16_ the input batch,
  // a16_[l] layer l's activations, dz16_ the output gradient, all 16-bit.
  int64_t reserved16_batch_ = 0;
  Tensor x16_, dz16_;
  std::vector<Tensor> a16_;
};

}  // namespace cohort
