#pragma once
// What `cohort train` under mpirun and its elastic mode (cohort launch)
// print the same way: the end of the progress line and the summary fields
// of the model, the schedule and the evaluation.

#include <nlohmann/json.hpp>
#include <string>

#include "runtime/config.h"
#include "runtime/trainer.h"

namespace cohort::tools {

// "  lr 0.001" under a schedule, then "  val 2.1234" (token data) or
// "  test acc 88.12% loss 0.3312" (a classifier) when this report evaluated.
std::string ProgressSuffix(const Config& c, const StepReport& r);

// model, lr, grad_norm (with clipping), tokens_per_s (a GPT), and the last
// evaluation: val_loss (+ val_bits_per_byte for bytes), or eval_loss,
// eval_accuracy, eval_samples and eval_confusion (rows: true class; columns:
// prediction).
void AddRunFields(const Config& c, const TrainSummary& s, nlohmann::json* j);

// --save-params: the whole model (Trainer::FullParams, PyTorch's names and
// layout) as fp32 safetensors, atomically, with its model, steps and world
// size in the metadata.
Status WriteParams(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& params,
                   const Config& c, int64_t steps, int world);

}  // namespace cohort::tools
