#pragma once
// Optimizers over a flat parameter buffer: SGD with momentum and AdamW,
// with PyTorch's semantics (torch.optim.SGD, torch.optim.AdamW). Each owns
// its state buffers, allocated on its Compute (the CPU unless given one),
// where the parameters and gradients passed to Step live too; not
// thread-safe.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "runtime/compute.h"
#include "runtime/config.h"

namespace cohort {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of params[0, n) from grads[0, n).
  virtual void Step(float* params, const float* grads) = 0;
  // Named state tensors (for checkpoints and memory accounting), on the
  // optimizer's Compute. They share storage with the optimizer: writing into
  // them (Compute::CopyToDevice) restores state.
  virtual std::vector<std::pair<std::string, Tensor>> State() const = 0;
  int64_t state_bytes() const;
  // Updates applied so far (AdamW's bias correction and SGD's first-step
  // rule depend on it); set when restoring a checkpoint.
  int64_t steps() const { return steps_; }
  void set_steps(int64_t steps) { steps_ = steps; }
  // The learning rate of the next Step (train.lr_schedule sets it per step).
  virtual void set_lr(float lr) = 0;

 protected:
  int64_t steps_ = 0;
};

// `compute` (not owned; null: HostCompute()) holds the state and runs the update.
Result<std::unique_ptr<Optimizer>> MakeOptimizer(const OptimizerConfig& config, int64_t num_params,
                                                 Compute* compute = nullptr);

}  // namespace cohort
