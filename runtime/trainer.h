#pragma once
// The data-parallel Trainer: forward, backward, gradient all-reduce (average)
// and the optimizer step, on every rank of a Communicator.
//
// Every rank holds a full replica. Parameters are initialised from the seed
// and broadcast from rank 0; gradients live in one flat buffer with one extra
// slot that carries the batch loss, so a single all-reduce averages both.
// Set-up failures on any rank are agreed on (AgreeOnStatus) so every rank
// returns the same error instead of waiting in a collective.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "core/tensor.h"
#include "runtime/config.h"
#include "runtime/dataset.h"
#include "runtime/mlp.h"
#include "runtime/optimizer.h"

namespace cohort {

struct StepReport {
  int64_t step;          // 1-based, after it completed
  int64_t total_steps;
  double loss;           // mean over the global batch
  double samples_per_s;  // over the steps since the previous report
  double step_ms;        // mean step time since the previous report
  double allreduce_share;
};

struct TrainSummary {
  int world_size = 1;
  std::string backend;
  int64_t steps = 0;
  int64_t global_batch = 0;
  int64_t num_params = 0;
  double initial_loss = 0;
  double final_loss = 0;   // mean of the last min(10, steps) global-batch losses
  double last_loss = 0;    // the last step's global-batch loss
  double samples_per_s = 0;
  double train_s = 0;      // the training loop
  double step_ms = 0;
  double data_ms = 0, forward_ms = 0, backward_ms = 0, allreduce_ms = 0, optimizer_ms = 0;
  double allreduce_share = 0;
  int64_t optimizer_state_bytes = 0;
};

class Trainer {
 public:
  // Validates the config against the world (batch divides, data matches the
  // model, shards divide over ranks), loads this rank's data and builds the
  // replica. Collective: every rank calls it; every rank gets the same error.
  static Result<std::unique_ptr<Trainer>> Create(const Config& config, Communicator& comm);

  // Runs `steps` steps. `report` (may be empty) is called on every rank at
  // each progress point: every `log_every` steps, or about once a second when
  // log_every is 0, and after the last step.
  Result<TrainSummary> Run(int64_t steps, const std::function<void(const StepReport&)>& report);

  const Mlp& model() const { return *model_; }
  const Tensor& params() const { return params_; }
  // The parameters as named tensors (views into the flat buffer).
  std::vector<std::pair<std::string, Tensor>> NamedParams() const;
  int64_t batch_per_rank() const { return batch_; }

 private:
  Trainer(const Config& config, Communicator& comm) : config_(config), comm_(comm) {}

  Config config_;
  Communicator& comm_;
  int64_t batch_ = 0;
  std::unique_ptr<Dataset> data_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<Mlp> model_;
  std::unique_ptr<Optimizer> optimizer_;
  Tensor params_;  // num_params
  Tensor grads_;   // num_params + 1 (the loss rides in the last slot)
  int64_t step_ = 0;
};

}  // namespace cohort
