#pragma once
// A multi-layer perceptron over one flat parameter buffer.
//
// Layer l maps a_l (batch x in_l) to z_l = a_l W_l + b_l with W_l stored
// row-major as (in_l x out_l) and b_l (out_l); hidden layers apply the
// activation, the last produces logits for softmax cross-entropy. Parameters
// live in one flat fp32 array, layer by layer [W_0, b_0, W_1, b_1, ...], and
// gradients share that layout, so one all-reduce (or a few buckets) covers
// them with no packing.
//
// An Mlp owns its activation workspace and is not thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/kernels.h"

namespace cohort {

struct ParamInfo {
  std::string name;            // "layers.0.weight", "layers.0.bias", ...
  int64_t offset;              // in elements, into the flat buffer
  std::vector<int64_t> shape;  // weight: {in, out}; bias: {out}
};

struct StepTimes {
  double forward_s = 0;
  double backward_s = 0;
};

class Mlp {
 public:
  Mlp(std::vector<int64_t> layers, kernels::Activation activation);

  int64_t num_params() const { return num_params_; }
  const std::vector<ParamInfo>& params() const { return info_; }
  const std::vector<int64_t>& layers() const { return layers_; }
  int64_t inputs() const { return layers_.front(); }
  int64_t classes() const { return layers_.back(); }

  // Deterministic initialisation from `seed` (PyTorch nn.Linear's
  // U(-1/sqrt(in), 1/sqrt(in)) for weights and biases), identical on every rank.
  void Init(float* params, uint64_t seed) const;

  // Runs forward and backward on a batch: returns the mean cross-entropy
  // loss over the batch and overwrites `grads` (num_params floats) with the
  // gradient of that mean. Labels must lie in [0, classes()).
  double ForwardBackward(const float* params, const float* x, const int32_t* labels,
                         int64_t batch, float* grads, StepTimes* times = nullptr);
  // The mean loss only.
  double Loss(const float* params, const float* x, const int32_t* labels, int64_t batch);

 private:
  void Forward(const float* params, const float* x, int64_t batch);
  void Reserve(int64_t batch);

  std::vector<int64_t> layers_;
  kernels::Activation activation_;
  std::vector<ParamInfo> info_;
  std::vector<int64_t> w_offset_, b_offset_;
  int64_t num_params_ = 0;
  int64_t reserved_batch_ = 0;
  // Workspace: z_[l] pre-activations (batch x out_l); a_[l] post-activation
  // inputs of layer l+1; probs_ and grad scratch.
  std::vector<std::vector<float>> z_, a_;
  std::vector<float> probs_, dz_, da_;
};

}  // namespace cohort
