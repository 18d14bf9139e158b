#pragma once
// Compute: where a Trainer's buffers live and its kernels run (train.device).
//
// The Mlp, the optimizers, the gradient sync and the Trainer reach memory and
// kernels only through this interface, so one training loop serves the CPU
// and a CUDA device:
// - HostCompute(): ordinary memory and kernels/cpu; every call finishes
//   before it returns, copies are memcpy, Sync and the ordering calls do
//   nothing. This is the path every CPU test runs.
// - MakeCudaCompute(device): cudaMalloc'd memory and the kernels/cuda twins,
//   all enqueued on one compute stream owned by the Compute; kernels return
//   without waiting for the device. Builds without CUDA return an error.
//
// Pointers handed to the kernel calls are device pointers (memory from
// Alloc, or a device communicator's registered memory); host code must not
// dereference them: it copies with CopyToHost / CopyToDevice.
//
// Ordering with communication (compute and communication on separate
// streams): whoever produces data on the compute stream that a collective
// will read calls MarkReady(slot) after enqueuing the producer; the
// communication thread calls WaitReady(slot) before the collective, which
// returns once the work enqueued before the mark is done (a CUDA event; the
// compute stream itself is never blocked). Collectives that return only when
// their result is complete (every Communicator here) need nothing after.
//
// Threads: kernel calls, copies and Sync come from one thread (the
// trainer's); MarkReady from that thread; WaitReady from any thread.
// Errors: kernel failures are not returned per call (they are asynchronous
// on a GPU): Sync and CopyToHost report the first one.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "core/tensor.h"
#include "kernels/cpu/kernels.h"

namespace cohort {

// Slots of MarkReady/WaitReady: the gradient sync uses one per layer
// (0 .. layers-1); kMaxReadySlots bounds them.
inline constexpr int kMaxReadySlots = 1024;

class Compute {
 public:
  virtual ~Compute() = default;

  virtual Device device() const = 0;
  bool host() const { return device() == Device::kCpu; }
  // "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)": for logs and the summary.
  virtual std::string Describe() const = 0;

  // Zero-filled memory on this device, freed when the last tensor using it goes.
  virtual Result<Tensor> Alloc(Shape shape, DType dtype) = 0;
  // Host memory to stage copies to and from this device (page-locked on a
  // GPU, so CopyToDevice from it is a DMA that does not stage through a
  // bounce buffer); ordinary memory by default. The caller must not rewrite
  // it while a copy from it may be in flight (after a Sync it is not).
  virtual Result<Tensor> AllocStaging(Shape shape, DType dtype) {
    return Tensor::Empty(std::move(shape), dtype);
  }
  // Copies between host memory and this device's memory. CopyToDevice may
  // return before the copy is done only after it has read `src`; CopyToHost
  // waits for the device (everything enqueued before it) and returns the
  // first kernel error since the last Sync.
  virtual void CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual Status CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual void Zero(void* dst, size_t bytes) = 0;
  // Waits for everything enqueued; the first kernel error since the last Sync.
  virtual Status Sync() = 0;

  virtual void MarkReady(int slot) { (void)slot; }
  virtual Status WaitReady(int slot) {
    (void)slot;
    return Status::Ok();
  }

  // ---- Kernels: the signatures and meanings of kernels/cpu/kernels.h ----
  virtual void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) = 0;
  virtual void GemmMixed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                         DType ab_type, const void* a, int64_t lda, const void* b, int64_t ldb,
                         float beta, DType c_type, void* c, int64_t ldc) = 0;
  virtual void BiasActForward(const float* x, const float* bias, float* y, int64_t rows,
                              int64_t cols, kernels::Activation act) = 0;
  virtual void ActForward(const float* z, float* y, int64_t n, kernels::Activation act) = 0;
  virtual void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n,
                           kernels::Activation act) = 0;
  virtual void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) = 0;
  // The mean loss goes to device memory (*mean_loss), so nothing waits.
  virtual void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                          int64_t rows, int64_t cols, float* mean_loss) = 0;
  virtual void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels,
                                           float* dlogits, int64_t rows, int64_t cols,
                                           float scale) = 0;
  virtual void SgdMomentumUpdate(float* param, const float* grad, float* momentum_buf, int64_t n,
                                 const kernels::SgdOptions& opt, bool first_step) = 0;
  virtual void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                           const kernels::AdamWOptions& opt, int64_t step) = 0;
  virtual void Scale(float* y, int64_t n, float s) = 0;
  // `found_nonfinite` is device memory.
  virtual void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found_nonfinite) = 0;
  virtual void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) = 0;
  virtual void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) = 0;

  // ---- GPT-2 kernels: the signatures and meanings of kernels/cpu/transformer.h ----
  virtual void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe,
                                float* out, int64_t B, int64_t T, int64_t C) = 0;
  virtual void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                                 int64_t B, int64_t T, int64_t C) = 0;
  virtual void LayerNormForward(const float* x, const float* w, const float* b, float* y,
                                float* mean, float* rstd, int64_t rows, int64_t C, float eps) = 0;
  virtual void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                                 const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                                 int64_t C) = 0;
  virtual void ResidualAdd(const float* a, const float* b, float* out, int64_t n) = 0;
  virtual void GeluForward(const float* x, float* y, int64_t n) = 0;
  virtual void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) = 0;
  virtual void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T,
                                int64_t C, int64_t NH) = 0;
  virtual void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                                 float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) = 0;
  // `mean_loss` is device memory.
  virtual void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits,
                                 int64_t rows, int64_t V, float grad_scale, float* mean_loss) = 0;
  // `out` is device memory.
  virtual void SumSquares(const float* x, int64_t n, float* out) = 0;

  // Convenience: one float from device memory (waits; see CopyToHost).
  Result<float> ReadFloat(const float* p);
};

// The process-wide CPU compute (stateless; kernels/cpu underneath).
Compute& HostCompute();

// A compute on CUDA device `device` with its own stream. Makes the device
// current on the calling thread. FailedPrecondition in builds without CUDA;
// Unavailable when the device cannot be used.
Result<std::unique_ptr<Compute>> MakeCudaCompute(int device);

}  // namespace cohort
