#pragma once
// The Trainer: forward, backward, gradient synchronisation and the optimizer
// step, on every rank of a job laid out as data-parallel x tensor-parallel.
//
// Layout: world = D x T ranks; rank r is tensor rank r % T of tensor group
// r / T, and data rank r / T of data group r % T (tensor groups are
// contiguous ranks, usually one host). Every rank of a tensor group sees the
// same batch; data ranks see different slices of the global batch.
//
// Gradient sync over the data group:
// - ZeRO 0: one all-reduce (average) of the flat gradient buffer, with one
//   extra slot carrying the batch loss.
// - ZeRO 1: reduce-scatter (average) so each data rank gets 1/D of the
//   gradient, the optimizer updates that partition with its 1/D of the
//   state, and an all-gather rebuilds the parameters. Optimizer memory per
//   rank falls as 1/D.
// Mixed precision (train.precision bf16 or fp16): the parameters and the
// optimizer state stay fp32 (master weights); after each optimizer update the
// parameters are rounded once into a 16-bit copy that the forward and
// backward GEMMs read (Mlp's Precision). Gradients are fp32 and synchronised
// as in fp32 (or by train.compression). fp16 adds dynamic loss scaling
// (LossScaler): after the sync the gradients are unscaled and checked for
// inf/NaN; the flag is agreed over the world when ranks hold different
// gradient parts (ZeRO-1 partitions, tensor-parallel parts), and an overflow
// skips the optimizer step on every rank.
// Device (train.device): the parameters, gradients, optimizer state and
// workspace live on the Trainer's Compute, the CPU or one CUDA device; the
// data and tensor communicators must work on that memory (NCCL for a GPU).
// On a GPU a step waits for the device where it must only: for the fp16
// overflow flag, around ZeRO-1's collectives and tensor-parallel all-reduces
// (which run on the communicator's stream), and at the end for the loss.
// Checkpoints, CaptureState, Restore and FullParams copy through the host.
// Parameters start from the seed (identically everywhere, whatever the split)
// and are then broadcast from data rank 0. Set-up failures on any rank are
// agreed on (AgreeOnStatus), so every rank returns the same error.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "core/tensor.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/data/idx.h"
#include "runtime/data/tokens.h"
#include "runtime/dataset.h"
#include "runtime/grad_sync.h"
#include "runtime/loss_scaler.h"
#include "runtime/model.h"
#include "runtime/optimizer.h"
#include "runtime/timeline.h"

namespace cohort {

// The communicators of one rank. `world` is every rank; `data` the ranks
// that hold the same model part; `tensor` the ranks that split one replica.
// Not owned. `data` and `tensor` may be the same object as `world` when the
// other dimension is 1.
struct ParallelGroups {
  Communicator* world = nullptr;
  Communicator* data = nullptr;
  Communicator* tensor = nullptr;
};

struct StepReport {
  int64_t step;  // 1-based, after it completed
  int64_t total_steps;
  double loss;           // mean over the global batch
  double samples_per_s;  // over the steps since the previous report
  double step_ms;        // mean step time since the previous report
  double allreduce_share;
  double lr = 0;              // the learning rate of the last step
  double grad_norm = -1;      // its gradient norm before clipping (-1: no clipping)
  double val_loss = -1;       // the validation loss when evaluated at this step, else -1
  double eval_accuracy = -1;  // and the test accuracy (classification), else -1
};

// What one step did, for metrics (runtime/trainer fills it; tools/ format
// it). Times are wall seconds on this rank.
struct StepStats {
  int64_t step = 0;   // global step count after it (1-based)
  double loss = 0;    // the global-batch loss
  double step_s = 0;  // the whole step: data, compute, gradient sync, checkpoint
  double sync_s = 0;  // gradient sync (all-reduce, or reduce-scatter + all-gather under ZeRO-1)
  int64_t sync_bytes =
      0;               // the gradient buffer the sync reduced (16-bit on the wire with compression)
  int data_ranks = 1;  // ranks of the sync (bus bandwidth factor 2(n-1)/n)
  int64_t samples = 0;                // this rank's batch
  int64_t checkpoints_committed = 0;  // by this Trainer so far
  double lr = 0;                      // the learning rate this step used
  double grad_norm = -1;      // the whole gradient's norm before clipping (-1: not computed)
  double val_loss = -1;       // the validation loss when evaluated after this step, else -1
  double eval_accuracy = -1;  // and the test accuracy (classification), else -1
};

// One evaluation (Trainer::Evaluate), the same on every rank.
struct EvalResult {
  double loss = 0;  // mean cross-entropy per target (nats)
  double accuracy =
      -1;  // classification: the fraction of samples predicted right; -1 for token data
  int64_t samples = 0;             // samples evaluated, over every data rank
  int32_t classes = 0;             // classification: the confusion matrix's side
  std::vector<int64_t> confusion;  // classes x classes: row = true label, column = prediction
};

struct TrainSummary {
  int world_size = 1;
  int data_parallel = 1, tensor_parallel = 1, zero = 0;
  std::string backend;
  int64_t steps = 0;
  int64_t global_batch = 0;
  int64_t num_params = 0;    // the whole model
  int64_t local_params = 0;  // this rank's part (tensor parallel)
  double initial_loss = 0;
  double final_loss = 0;  // mean of the last min(10, steps) global-batch losses
  double last_loss = 0;   // the last step's global-batch loss
  double samples_per_s = 0;
  double train_s = 0;  // the training loop
  double step_ms = 0;
  double data_ms = 0, forward_ms = 0, backward_ms = 0, allreduce_ms = 0, optimizer_ms = 0;
  double tensor_comm_ms = 0;
  double allreduce_share = 0;         // gradient sync time / step time
  double allreduce_wait_ms = 0;       // per step, time compute waited for gradient sync (exposed)
  int64_t optimizer_state_bytes = 0;  // this rank's optimizer state
  int64_t start_step = 0, end_step = 0;  // global step counts (resumed runs start later)
  // True when the stop check ended Run before `steps` (steps then holds the
  // steps that ran); the final checkpoint was written and committed as usual.
  bool stopped_early = false;
  int64_t checkpoints_committed = 0;
  double checkpoint_ms = 0;         // per step, time the loop spent on checkpoints
  std::string device = "cpu";       // where it trained (Compute::Describe)
  std::string precision = "fp32";   // train.precision
  double loss_scale = 1;            // fp16: the loss scale after the last step; otherwise 1
  int64_t skipped_steps = 0;        // fp16: steps whose gradients overflowed (no update)
  int64_t checkpoints_written = 0;  // shards this rank wrote (committed or not)
  double checkpoint_write_ms =
      0;                 // mean per shard, on the writer thread (off the step's critical path)
  double val_loss = -1;  // the last evaluation's mean validation loss (nats); -1: none
  EvalResult eval;       // the last evaluation (samples 0: none)
  int64_t evaluations = 0;
  double eval_ms = 0;     // per step, time spent evaluating
  double grad_norm = -1;  // the last step's gradient norm before clipping (-1: not clipped)
  double lr = 0;          // the last step's learning rate
};

class Trainer {
 public:
  // Validates the config against the layout (batch divides over the data
  // ranks, data matches the model, the tensor size divides the world and the
  // layers, shards divide over the ranks), loads this rank's data and builds
  // its part of the model. Collective over groups.world.
  // `timeline` (may be null, not owned) records each phase of each step.
  // `compute` (not owned, outlives the Trainer; null: HostCompute()) is
  // where it trains.
  static Result<std::unique_ptr<Trainer>> Create(const Config& config, ParallelGroups groups,
                                                 Timeline* timeline = nullptr,
                                                 Compute* compute = nullptr);
  // The gradient buckets (ZeRO 0), last layers first.
  std::vector<GradBucket> buckets() const {
    return sync_ ? sync_->buckets() : std::vector<GradBucket>{};
  }

  // Continues from a committed checkpoint (any layout with the same model
  // and optimizer type): parameters, optimizer state and the step count.
  // Local; the caller agrees on the outcome across ranks.
  Status Restore(const LoadedCheckpoint& ck);
  int64_t step() const { return step_; }

  // Runs `steps` steps. `report` (may be empty) is called on every rank at
  // each progress point: every `log_every` steps, or about once a second when
  // log_every is 0, and after the first and last step.
  Result<TrainSummary> Run(int64_t steps, const std::function<void(const StepReport&)>& report);

  // Called on every rank after each completed step with the global step
  // count (1-based) and that step's global-batch loss; a non-OK status stops
  // Run, which returns it. Elastic training uses it to snapshot the state and
  // to leave the loop when the membership epoch changes.
  using StepHook = std::function<Status(int64_t step, double loss)>;
  void set_step_hook(StepHook hook) { step_hook_ = std::move(hook); }
  // Called on every rank after each completed step, before the step hook;
  // cheap (it runs on the training thread). For metrics.
  using StepObserver = std::function<void(const StepStats&)>;
  void set_step_observer(StepObserver observer) { step_observer_ = std::move(observer); }
  // Collective: called on every rank after each step (after the step hook);
  // it must give every rank the same answer (e.g. an all-reduce of a local
  // flag). True ends Run after this step as if it were the last: the final
  // checkpoint is written and committed, and the summary says stopped_early.
  // An error stops Run, which returns it. Used to leave cleanly on SIGTERM.
  using StopCheck = std::function<Result<bool>()>;
  void set_stop_check(StopCheck check) { stop_check_ = std::move(check); }

  // Fault injection for tests (fp16 only): called on every rank with the
  // 1-based step and this rank's synchronised, still scaled gradients (its
  // ZeRO-1 partition, or the whole buffer) just before the overflow check.
  // The pointer is the compute's memory (host memory on the CPU).
  using GradHook = std::function<void(int64_t step, float* grads, int64_t n)>;
  void set_grad_hook(GradHook hook) { grad_hook_ = std::move(hook); }

  // The whole training state (parameters, optimizer state, optimizer and
  // global step counts) as a LoadedCheckpoint that Restore() takes back, so
  // an elastic job can move it across a rebuild of its communicators.
  // Under ZeRO-1 the optimizer partitions are gathered, so every rank gets
  // the whole state: collective over the data group then. FailedPrecondition
  // under tensor parallelism.
  Result<LoadedCheckpoint> CaptureState();
  // A state of the right shapes (zeros) to receive a broadcast into. Local.
  LoadedCheckpoint EmptyState() const;

  // Commits checkpoints beyond MANIFEST.json (elastic jobs: through the
  // coordinator). Not owned; must outlive Run(); used on rank 0 only. Null:
  // MANIFEST.json is the commit.
  void set_checkpoint_committer(CheckpointCommitter* committer) { committer_ = committer; }
  // No checkpoint is written at or before global step `step`: an elastic
  // job's coordinator already committed one there, and a recovery that redoes
  // those steps must not rewrite (and so damage) its directory. Every rank
  // must be given the same value. Default 0.
  void set_checkpoint_floor(int64_t step) { checkpoint_floor_ = step; }

  const Model& model() const { return *model_; }
  // Evaluates the current parameters, with the data-parallel ranks sharing
  // the work (collective over the world):
  // - token data: the mean loss over train.eval_batches batches of the
  //   validation split, the same batches at every call;
  // - a classification test split (data.source idx): every test sample
  //   exactly once whatever the world size (data rank d of D takes samples
  //   [d n / D, (d + 1) n / D)): mean loss, accuracy, confusion matrix.
  // FailedPrecondition when the data has no held-out split.
  Result<EvalResult> Evaluate();
  int64_t batch_per_rank() const { return batch_; }
  // The whole model's parameters, assembled from the tensor group's parts
  // (collective over the tensor group; every rank gets them), named and
  // shaped as --save-params writes them (PyTorch's layout: linear weights
  // [out, in]).
  Result<std::vector<std::pair<std::string, Tensor>>> FullParams();

 private:
  Trainer(const Config& config, ParallelGroups groups, Timeline* timeline)
      : config_(config), g_(groups), timeline_(timeline) {}
  // Create's steps. Collective (world): the parameters, loss and overflow
  // slots and the gradients (registered with the data communicator on the
  // CPU when it can), `padded` elements each.
  Status AllocateBuffers(int64_t padded);
  // Collective: initialises the n parameters from the seed; data rank 0's
  // copy wins.
  Status InitParams(int64_t n);
  // Without ZeRO: the gradient sync over the data group, with its 16-bit
  // wire buffer when gradients are compressed.
  void MakeGradientSync(int64_t padded);
  // The loss of this rank's batch is in loss_dev_ and becomes the data group's mean.
  Status ZeroStep(double* comm_s, double* optim_s);
  // Mixed precision: rounds the fp32 parameters into params16_.
  void CastParams();
  // fp16: unscales n gradient elements in place, agrees on overflow over the
  // world when `agree`, and tells the scaler; true when the optimizer steps.
  Result<bool> UnscaleGrads(float* g, int64_t n, bool agree);
  // The loss scaler's state as checkpoint metadata (empty without one).
  std::map<std::string, std::string> ScalerMetadata() const;
  // Collective: collects the previous checkpoint write, commits it when every
  // rank wrote its shard, and (when `next` is set) starts writing one at the
  // current step in the background.
  Status Checkpoint(bool next);
  Result<CheckpointShard> MakeShard() const;
  CheckpointLayout Layout() const;

  Config config_;
  ParallelGroups g_;
  Timeline* timeline_;
  Compute* compute_ = nullptr;
  std::unique_ptr<GradientSync> sync_;  // ZeRO 0
  std::vector<uint16_t> wire_heap_;     // 16-bit gradients when registered memory is unavailable
  int64_t batch_ = 0;
  std::unique_ptr<Dataset> data_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<TokenDataset> tokens_, val_tokens_;  // data.source tokens
  std::unique_ptr<IdxDataset> test_;                   // data.source idx: the test split
  Result<EvalResult> EvaluateTokens();
  Result<EvalResult> EvaluateClassifier();
  // Sums `values` over the data group (through device memory, which every
  // backend reads).
  Status SumOverData(std::vector<double>* values);
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t partition_ = 0;  // ZeRO-1: parameters per data rank (padded)
  Tensor params_;          // local params, padded to partition_ * data ranks
  Tensor grads_;           // the same size + 1 (the loss slot at the end)
  Tensor grad_part_;       // ZeRO-1: this rank's reduced gradient partition
  int64_t step_ = 0;
  Tensor params16_;         // mixed precision: params_ rounded (local params)
  Tensor loss_dev_;         // ZeRO-1: the batch loss, then its mean (one float)
  Tensor found_dev_;        // fp16: the overflow flag (one int32)
  Tensor x_host_, y_host_;  // a batch on the host (Compute::AllocStaging)
  Tensor norm_parts_;       // clipping: one sum of squares per parameter (device)
  // Fills this rank's part of global step `step`'s batch into x_host_ /
  // y_host_ (and copies it to the device).
  Status FillBatch(int64_t step);
  // Seconds Run spends in each phase, summed over its steps.
  struct RunClock {
    double data_s = 0, sync_s = 0, optim_s = 0, wait_s = 0, ckpt_s = 0, eval_s = 0;
    StepTimes times;  // forward, backward, tensor-parallel all-reduces
  };
  TrainSummary StartSummary(int64_t steps) const;
  void FinishSummary(const RunClock& c, int64_t steps, TrainSummary* s) const;
  // Gradient-sync seconds so far (ZeRO-1's and the buckets' communication thread's).
  double CommSeconds(const RunClock& c) const;
  // One step on the batch filled last (`t0`: when its filling began):
  // forward, backward, gradient sync (buckets, or ZeRO-1's reduce-scatter and
  // all-gather), fp16 unscaling, clipping and the optimizer. Returns the
  // global batch's loss.
  Result<float> TrainStep(RunClock* c, double t0);
  // A checkpoint after this step when checkpoint.every says so (the last
  // step of Run checkpoints at its end instead).
  Status CheckpointIfDue(bool last_step, RunClock* c);
  // Evaluates after this step when train.eval_every says so or on the last
  // step, into s->eval and s->val_loss; true when it did.
  Result<bool> EvaluateIfDue(bool last_step, RunClock* c, TrainSummary* s);
  // After Run's last step: the final checkpoint, committed before Run
  // returns, and the summary's step, loss-scale and checkpoint fields
  // (`skipped_before`: the scaler's skipped steps when Run began).
  Status EndRun(int64_t steps, int64_t skipped_before, RunClock* c, TrainSummary* s);
  Status ReserveBatch();
  Status CopyBatchToDevice();
  std::vector<int64_t> ids_;  // the sampler's sample ids of a batch (features)
  Tensor eval_loss_;          // one float
  Tensor eval_sums_;          // evaluation sums on the device (fp64)
  double grad_norm_ = -1;     // the last step's, before clipping
  // The device copies of the batch filled last.
  const void* batch_inputs() const;
  const int32_t* batch_targets() const;
  // train.clip_grad_norm: the whole model's gradient norm from this rank's
  // `n` gradients starting at flat offset `offset` (the whole buffer, or a
  // ZeRO-1 partition), agreed over the world, and the gradients scaled when
  // it exceeds the limit. Returns the norm before clipping.
  Result<double> ClipGradients(float* grads, int64_t offset, int64_t n);
  Tensor x_dev_, y_dev_;                      // the batch on the device (unused on the CPU)
  std::unique_ptr<LossScaler> scaler_;        // fp16 only
  std::unique_ptr<CheckpointWriter> writer_;  // when checkpoint.dir is set
  CheckpointLayout pending_;                  // the write in flight
  int64_t committed_ = 0;
  int64_t written_ = 0;
  double write_ms_ = 0;  // sum over written_
  CheckpointCommitter* committer_ = nullptr;
  int64_t checkpoint_floor_ = 0;
  StepHook step_hook_;
  StepObserver step_observer_;
  StopCheck stop_check_;
  GradHook grad_hook_;
};

}  // namespace cohort
