#pragma once
// The one run report of a training worker, under mpirun (tools/train_cmd.cc)
// and elastic (runtime/elastic/worker.h): the progress line, the loss
// figures and the summary fields of the model, the schedule and the
// evaluation, --save-params, and the BLAS-thread rule.

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/config.h"
#include "runtime/trainer.h"

namespace cohort {

// "step     40/300    loss   1.2345  ..." + ProgressSuffix: rank 0's
// progress line for the job's step `step` of `total`.
std::string ProgressLine(const Config& c, const StepReport& r, int64_t step, int64_t total);

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
Status WriteParams(const std::string& path,
                   const std::vector<std::pair<std::string, Tensor>>& params, const Config& c,
                   int64_t steps, int world);

// The losses of a job by global step: the first loss of step 1 and the
// last kTail steps (a step done again after a recovery overwrites its loss).
// Bounded: a step hook records every step.
class LossLog {
 public:
  static constexpr size_t kTail = 10;
  void Record(int64_t step, double loss);
  // The first loss recorded for step 1, or -1 when step 1 was not recorded.
  double Initial() const { return initial_; }
  // final_loss: the mean of the losses of the last min(kTail, recorded) steps.
  double Final() const;

 private:
  double initial_ = -1;
  std::map<int64_t, double> tail_;  // the kTail highest steps
};

// The BLAS threads of this process: `requested` when > 0; else 0 (leave
// OpenBLAS alone) when OPENBLAS_NUM_THREADS is set; else the CPUs the
// scheduler gave each rank, or the host's cores split among the ranks on it
// (HostLayoutFromEnv: the launcher's, mpirun's or Slurm's layout). Applies
// the result (kernels::SetBlasThreads) when it is > 0.
Result<int> ApplyBlasThreadRule(int requested);

}  // namespace cohort
