#pragma once
// Gradient bucketing with optional overlap of communication and backward.
//
// The flat gradient buffer is cut into buckets of whole layers in reverse
// layer order (the order backward produces them): a small first bucket so
// communication starts early, then buckets up to `cap_bytes`. Buckets are
// ranges of the one buffer, so gradients stay views into their bucket and
// nothing is copied. The first bucket also covers the tail of the buffer (the
// padding and the loss slot the Trainer keeps there).
//
// Per step: Begin(); LayerReady(l) as backward finishes layer l (every layer
// exactly once, any order); Finish() waits until every bucket is averaged
// over the communicator and returns the first error. With overlap, a bucket's
// all-reduce starts on a communication thread as soon as its last layer is
// ready; without, Finish() runs them in order on the caller's thread. Both
// issue the same all-reduces on the same ranges in the same order, so the
// gradients are bitwise identical either way.
//
// Compression (wire = kBF16 or kF16, with a 16-bit buffer as long as the
// gradients): a bucket is scaled by 1/ranks and rounded to 16 bits, summed
// over the communicator (shm and auto add bf16/fp16 in fp32 and round once),
// and widened back into the fp32 gradients. Half the bytes on the wire, at
// the price of one rounding of each rank's gradient and of the sum; bucketed
// and unbucketed runs still give the same bits (the casts are element-wise).
//
// Devices: with a Compute other than the CPU (gradients in GPU memory, a
// device communicator such as NCCL), LayerReady marks the compute stream
// (Compute::MarkReady) and a bucket's all-reduce first waits for the marks
// of its layers (WaitReady), so communication runs on its own stream after
// the backward kernels that produced its gradients, and the compute stream
// goes on. Compression casts on the host and needs the CPU.
//
// Thread safety: Begin/LayerReady/Finish are called from one thread (the
// trainer's); the communicator is used only by the communication thread
// between Begin and Finish when overlapping, so the caller must not use the
// same communicator until Finish returns.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "core/status.h"
#include "runtime/compute.h"

namespace cohort {

class Timeline;

struct GradBucket {
  int64_t offset = 0;  // elements into the gradient buffer
  int64_t count = 0;
  int first_layer = 0, last_layer = 0;  // layers [first, last] (ascending)
};

// `layer_ranges[l]` = (offset, count) of layer l's gradients, ascending and
// contiguous; `total` the buffer's whole length. Caps are in bytes of fp32;
// a cap of 0 means one bucket for everything.
std::vector<GradBucket> PlanGradBuckets(
    const std::vector<std::pair<int64_t, int64_t>>& layer_ranges, int64_t total, int64_t cap_bytes,
    int64_t first_cap_bytes);

class GradientSync {
 public:
  GradientSync(Communicator& comm, float* grads, std::vector<GradBucket> buckets, int num_layers,
               bool overlap, Timeline* timeline, DType wire = DType::kF32,
               void* wire_buffer = nullptr, Compute* compute = nullptr);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  const std::vector<GradBucket>& buckets() const { return buckets_; }
  void Begin();
  void LayerReady(int layer);
  Status Finish();
  // Seconds spent inside all-reduces, summed over steps.
  double comm_seconds() const { return comm_s_; }

 private:
  Status Reduce(size_t bucket);
  void Loop();

  Communicator& comm_;
  float* const grads_;
  const DType wire_;
  uint16_t* const wire_buffer_;  // kBF16/kF16: 16-bit twin of grads_
  const std::vector<GradBucket> buckets_;
  const bool overlap_;
  Compute& compute_;
  Timeline* const timeline_;
  std::vector<int> bucket_of_layer_;
  std::vector<int> pending_layers_;  // per bucket, layers not yet ready this step
  size_t launched_ = 0;              // buckets handed off this step (in order)
  double comm_s_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;  // guarded by mu_
  size_t done_ = 0;           // guarded by mu_: buckets finished this step
  Status first_error_;        // guarded by mu_
  bool stop_ = false;         // guarded by mu_
  std::thread worker_;
};

}  // namespace cohort
