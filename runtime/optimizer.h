#pragma once
// Optimizers over a flat parameter buffer: SGD with momentum and AdamW,
// with PyTorch's semantics (torch.optim.SGD, torch.optim.AdamW). Each owns
// its state buffers; not thread-safe.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "runtime/config.h"

namespace cohort {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of params[0, n) from grads[0, n).
  virtual void Step(float* params, const float* grads) = 0;
  // Named state tensors (for checkpoints and memory accounting).
  virtual std::vector<std::pair<std::string, Tensor>> State() const = 0;
  int64_t state_bytes() const;
};

std::unique_ptr<Optimizer> MakeOptimizer(const OptimizerConfig& config, int64_t num_params);

}  // namespace cohort
