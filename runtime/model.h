#pragma once
// Model: what the Trainer, the gradient sync, ZeRO-1, mixed precision,
// checkpoints and the elastic worker know of a model. None of them names a
// model type; runtime/mlp.h and runtime/gpt.h implement this interface and
// MakeModel picks one from the config.
//
// Parameters live in one flat fp32 buffer per rank (this rank's part when a
// tensor-parallel group splits the model), described by params(): a name, an
// offset into the buffer, this rank's shape and the whole tensor's shape.
// Gradients share that layout, so one all-reduce (or a few buckets) covers
// them with no packing. LocalToFull / FullToLocal map this rank's part to
// and from the whole model's flat layout (the unsplit model's buffer), which
// is what checkpoints store, so a checkpoint restores onto any split.
//
// A batch is `batch` samples; each sample has sample().inputs input elements
// of type sample().input_type (features as fp32, or token ids as int32) and
// sample().targets int32 targets (a class label, or the next token at each
// position). The loss is the mean cross-entropy over every target of the
// batch.
//
// Memory: parameters, gradients, inputs and targets passed to the model, and
// the workspace it owns, live on its Compute; every pointer argument below
// is device memory there. A model is not thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "collectives/communicator.h"
#include "core/dtype.h"
#include "core/status.h"
#include "runtime/compute.h"
#include "runtime/config.h"

namespace cohort {

// How a parameter is split across the tensor-parallel group.
// kColumn: the output features (rows of an [out, in] weight, or columns of an
// MLP's [in, out] weight; and the bias) are divided; kRow: the input features
// are divided and the bias is replicated; kReplicated: every rank holds all.
enum class LayerSplit : uint8_t { kReplicated, kColumn, kRow };

struct ParamInfo {
  std::string name;  // as saved by --save-params: "layers.0.weight", "transformer.wte.weight", ...
  int64_t offset;    // in elements, into this rank's flat buffer
  std::vector<int64_t> shape;       // this rank's part
  std::vector<int64_t> full_shape;  // the whole tensor
  LayerSplit split;                 // how the layer is split across the group
  bool is_bias;
  // Saved (--save-params) transposed, as [full_shape[1], full_shape[0]]: the
  // MLP computes with [in, out] weights and saves them [out, in], as
  // torch.nn.Linear stores them.
  bool saved_transposed = false;
};

// How a forward and backward pass computes (train.precision).
// kF32: everything in fp32. kBF16 / kF16 (mixed precision, fp32 master
// weights kept by the caller): the forward and backward GEMMs take 16-bit
// inputs (the weights from `params16`, the activations and the output
// gradients rounded to 16 bits) and accumulate in fp32
// (kernels::GemmMixed). `loss_scale` multiplies the loss before backward
// (fp16 dynamic loss scaling), so every gradient comes out scaled by it.
struct Precision {
  DType compute = DType::kF32;
  const uint16_t* params16 =
      nullptr;  // num_params() values, the caller's 16-bit copy of params (device memory)
  float loss_scale = 1.0f;
};

struct StepTimes {
  double forward_s = 0;
  double backward_s = 0;
  double tensor_comm_s = 0;  // tensor-parallel all-reduces
};

// One sample of a batch.
struct SampleShape {
  DType input_type = DType::kF32;  // kF32 features or kI32 token ids
  int64_t inputs = 0;              // input elements per sample
  int64_t targets = 1;             // int32 targets per sample
  int32_t classes = 0;             // targets lie in [0, classes)
};

class Model {
 public:
  virtual ~Model() = default;

  virtual int64_t num_params() const = 0;       // this rank's part
  virtual int64_t full_num_params() const = 0;  // the whole model
  virtual const std::vector<ParamInfo>& params() const = 0;
  virtual int tp_size() const = 0;
  virtual SampleShape sample() const = 0;
  virtual Compute& compute() const = 0;
  // Which precisions the model computes in (the MLP: all; the GPT: fp32).
  virtual bool SupportsPrecision(DType precision) const = 0;

  // Deterministic initialisation of this rank's part from `seed`. Each
  // element's value depends on its place in the whole model, so every split
  // starts from the same network. `params` is host memory.
  virtual void Init(float* params, uint64_t seed) const = 0;
  // Host memory, both.
  virtual void LocalToFull(const float* local, float* full) const = 0;
  virtual void FullToLocal(const float* full, float* local) const = 0;

  // (offset, count) of each gradient group in the flat buffer, ascending and
  // covering it: the unit whose readiness ForwardBackwardTo reports.
  virtual std::vector<std::pair<int64_t, int64_t>> LayerRanges() const = 0;

  // Forward and backward on a batch: writes the mean loss (fp32) to `loss`
  // and overwrites `grads` (num_params floats) with the gradient of that mean
  // (times precision->loss_scale). Fails only when a tensor-parallel
  // collective fails. `on_layer_grads` (may be null) is called with the index
  // of a LayerRanges() group as soon as its gradients are final (enqueued, on
  // a GPU), each exactly once, so their all-reduce can start early. Waits for
  // the device only before a tensor-parallel all-reduce.
  virtual Status ForwardBackwardTo(const float* params, const void* inputs, const int32_t* targets,
                                   int64_t batch, float* grads, float* loss, StepTimes* times,
                                   const std::function<void(int)>* on_layer_grads,
                                   const Precision* precision) = 0;
  // The mean loss of a batch without backward (evaluation), to `loss`.
  virtual Status LossTo(const float* params, const void* inputs, const int32_t* targets,
                        int64_t batch, float* loss) = 0;

  // Forward only: the logits of every target (batch x sample().targets x
  // sample().classes floats, row-major) into host memory `logits`. Waits for
  // the device. For evaluation (accuracy, confusion) and tests.
  virtual Status LogitsToHost(const float* params, const void* inputs, int64_t batch,
                              float* logits) = 0;

  // Assembles the whole model's tensors from every rank's part (a collective
  // over the tensor-parallel group; `params` is device memory). Host
  // tensors in the order of params().
  virtual Result<std::vector<std::vector<float>>> GatherFull(const float* params) = 0;
};

// InvalidArgument when `tp_size` cannot split the configured model.
Status CheckModel(const ModelConfig& config, int tp_size);
// The configured model over tensor-parallel group `tp` (nullptr or size 1: no
// splitting) on `compute` (not owned; null: HostCompute()). Check first.
std::unique_ptr<Model> MakeModel(const ModelConfig& config, Communicator* tp, Compute* compute);
// The layout of tensor rank `tp_rank` of `tp_size` without a communicator:
// for mapping parameters between splits (checkpoints); it cannot run a
// split forward pass.
std::unique_ptr<Model> MakeModelLayout(const ModelConfig& config, int tp_size, int tp_rank);

}  // namespace cohort
