#include "runtime/grad_sync.h"

#include "collectives/shm/reduce_kernels.h"
#include "core/clock.h"
#include "runtime/timeline.h"

namespace cohort {
namespace {}  // namespace

std::vector<GradBucket> PlanGradBuckets(
    const std::vector<std::pair<int64_t, int64_t>>& layer_ranges, int64_t total, int64_t cap_bytes,
    int64_t first_cap_bytes) {
  COHORT_CHECK(!layer_ranges.empty()) << "no layers";
  std::vector<GradBucket> out;
  const int n = static_cast<int>(layer_ranges.size());
  int hi = n - 1;
  int64_t end = total;  // the first bucket reaches the buffer's end
  while (hi >= 0) {
    const int64_t cap = cap_bytes <= 0
                            ? INT64_MAX
                            : (out.empty() && first_cap_bytes > 0 ? first_cap_bytes : cap_bytes);
    int lo = hi;
    int64_t bytes = layer_ranges[static_cast<size_t>(lo)].second * 4;
    while (lo > 0 && bytes + layer_ranges[static_cast<size_t>(lo - 1)].second * 4 <= cap) {
      --lo;
      bytes += layer_ranges[static_cast<size_t>(lo)].second * 4;
    }
    GradBucket b;
    b.first_layer = lo;
    b.last_layer = hi;
    b.offset = layer_ranges[static_cast<size_t>(lo)].first;
    b.count = end - b.offset;
    out.push_back(b);
    end = b.offset;
    hi = lo - 1;
  }
  return out;
}

GradientSync::GradientSync(Communicator& comm, float* grads, std::vector<GradBucket> buckets,
                           int num_layers, bool overlap, Timeline* timeline, DType wire,
                           void* wire_buffer, Compute* compute)
    : comm_(comm),
      grads_(grads),
      wire_(wire),
      wire_buffer_(static_cast<uint16_t*>(wire_buffer)),
      buckets_(std::move(buckets)),
      overlap_(overlap),
      compute_(compute != nullptr ? *compute : HostCompute()),
      timeline_(timeline),
      bucket_of_layer_(static_cast<size_t>(num_layers), -1),
      pending_layers_(buckets_.size(), 0) {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (int l = buckets_[b].first_layer; l <= buckets_[b].last_layer; ++l)
      bucket_of_layer_[static_cast<size_t>(l)] = static_cast<int>(b);
  }
  for (int b : bucket_of_layer_) COHORT_CHECK(b >= 0) << "a layer is in no bucket";
  COHORT_CHECK(wire_ == DType::kF32 ||
               ((wire_ == DType::kBF16 || wire_ == DType::kF16) && wire_buffer_ != nullptr))
      << "compression needs a 16-bit buffer";
  COHORT_CHECK(wire_ == DType::kF32 || compute_.host()) << "gradient compression casts on the host";
  COHORT_CHECK(num_layers <= kMaxReadySlots)
      << num_layers << " layers, more than the compute's ready marks";
  if (overlap_) worker_ = std::thread([this] { Loop(); });
}

GradientSync::~GradientSync() {
  if (worker_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
}

void GradientSync::Begin() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    pending_layers_[b] = buckets_[b].last_layer - buckets_[b].first_layer + 1;
  }
  launched_ = 0;
  std::lock_guard<std::mutex> lock(mu_);
  done_ = 0;
  first_error_ = Status::Ok();
}

Status GradientSync::Reduce(size_t b) {
  const GradBucket& k = buckets_[b];
  const double t0 = MonotonicSeconds();
  const size_t count = static_cast<size_t>(k.count);
  Status s;
  if (!compute_.host()) {  // after the backward kernels of the bucket's layers
    for (int l = k.first_layer; l <= k.last_layer && s.ok(); ++l) s = compute_.WaitReady(l);
  }
  // A failed compute (s not OK) is reported instead of reducing.
  if (s.ok() && wire_ == DType::kF32) {
    s = comm_.AllReduce(grads_ + k.offset, grads_ + k.offset, count, DType::kF32, ReduceOp::kAvg);
  } else if (s.ok()) {
    // Scale first: fp16 overflows at 65504, and a sum of pre-scaled values
    // cannot exceed the largest gradient.
    uint16_t* w = wire_buffer_ + k.offset;
    CastFloatToHalf(wire_, grads_ + k.offset, w, count, 1.0f / static_cast<float>(comm_.size()));
    s = comm_.AllReduce(w, w, count, wire_, ReduceOp::kSum);
    if (s.ok()) CastHalfToFloat(wire_, w, grads_ + k.offset, count, 1.0f);
  }
  const double t1 = MonotonicSeconds();
  comm_s_ += t1 - t0;  // one writer at a time: the worker while overlapping, else the caller
  if (timeline_)
    timeline_->Add("all-reduce bucket " + std::to_string(b), Timeline::kCommTrack, t0, t1);
  if (s.ok()) return s;  // the message is built only on failure: this runs per bucket per step
  return s.WithContext("all-reduce of gradient bucket " + std::to_string(b));
}

void GradientSync::LayerReady(int layer) {
  const int b = bucket_of_layer_[static_cast<size_t>(layer)];
  COHORT_CHECK(pending_layers_[static_cast<size_t>(b)] > 0)
      << "layer " << layer << " reported twice";
  --pending_layers_[static_cast<size_t>(b)];
  if (!compute_.host()) compute_.MarkReady(layer);
  if (!overlap_) return;
  // Launch, in bucket order, every bucket whose layers are all ready: all
  // ranks must issue the same all-reduces in the same order.
  std::lock_guard<std::mutex> lock(mu_);
  while (launched_ < buckets_.size() && pending_layers_[launched_] == 0)
    queue_.push_back(launched_++);
  cv_.notify_all();
}

void GradientSync::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const size_t b = queue_.front();
    queue_.pop_front();
    const bool skip = !first_error_.ok();  // after a failure the communicator is unusable
    lock.unlock();
    Status s = skip ? Status::Ok() : Reduce(b);
    lock.lock();
    if (!s.ok() && first_error_.ok()) first_error_ = s;
    ++done_;
    cv_.notify_all();
  }
}

Status GradientSync::Finish() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    COHORT_CHECK(pending_layers_[b] == 0) << "bucket " << b << " has layers that never reported";
  }
  if (!overlap_) {
    for (size_t b = 0; b < buckets_.size(); ++b) COHORT_RETURN_IF_ERROR(Reduce(b));
    return Status::Ok();
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ == buckets_.size(); });
  return first_error_;
}

}  // namespace cohort
