// The CUDA Compute: kernels/cuda on one stream of one device. Host code
// (compiled by the C++ compiler); only in builds with CUDA.
#include <cuda_runtime_api.h>

#include <array>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels/cuda/kernels.h"
#include "kernels/cuda/transformer.h"
#include "runtime/compute.h"

namespace cohort {
namespace {

namespace kc = kernels::cuda;

Status FromCuda(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status::Ok();
  return Unavailable(what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

class CudaCompute final : public Compute {
 public:
  static Result<std::unique_ptr<Compute>> Create(int device) {
    int count = 0;
    COHORT_RETURN_IF_ERROR(FromCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
    if (device < 0 || device >= count) {
      return InvalidArgument("CUDA device " + std::to_string(device) +
                             " does not exist (this process sees " + std::to_string(count) +
                             "; check CUDA_VISIBLE_DEVICES)");
    }
    COHORT_RETURN_IF_ERROR(
        FromCuda(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")"));
    auto c = std::unique_ptr<CudaCompute>(new CudaCompute(device));
    cudaDeviceProp prop{};
    COHORT_RETURN_IF_ERROR(
        FromCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
    c->name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ")";
    COHORT_RETURN_IF_ERROR(FromCuda(cudaStreamCreateWithFlags(&c->stream_, cudaStreamNonBlocking),
                                    "cudaStreamCreate"));
    for (auto& e : c->ready_) {
      COHORT_RETURN_IF_ERROR(
          FromCuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate"));
    }
    kc::SetStream(c->stream_);
    return std::unique_ptr<Compute>(std::move(c));
  }

  ~CudaCompute() override {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (auto& e : ready_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (kc::Stream() == stream_) kc::SetStream(nullptr);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::kCuda; }
  std::string Describe() const override { return name_; }

  Result<Tensor> Alloc(Shape shape, DType dtype) override {
    const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
    void* p = nullptr;
    COHORT_RETURN_IF_ERROR(
        FromCuda(cudaMalloc(&p, bytes == 0 ? 1 : bytes),
                 "cudaMalloc of " + std::to_string(bytes) + " bytes on " + name_));
    // Zeroed before any kernel of this stream can use it.
    COHORT_RETURN_IF_ERROR(FromCuda(cudaMemsetAsync(p, 0, bytes, stream_), "cudaMemsetAsync"));
    auto storage = Storage::Wrap(p, bytes, Device::kCuda, [p] { cudaFree(p); });
    return Tensor::FromStorage(std::move(storage), std::move(shape), dtype);
  }

  Result<Tensor> AllocStaging(Shape shape, DType dtype) override {
    const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
    void* p = nullptr;
    COHORT_RETURN_IF_ERROR(FromCuda(cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocDefault),
                                    "cudaHostAlloc of " + std::to_string(bytes) + " bytes"));
    std::memset(p, 0, bytes);
    auto storage = Storage::Wrap(p, bytes, Device::kCpu, [p] { cudaFreeHost(p); });
    return Tensor::FromStorage(std::move(storage), std::move(shape), dtype);
  }

  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    Use();
    // From pageable memory the copy is staged before cudaMemcpyAsync returns,
    // so `src` may change afterwards; from AllocStaging's page-locked memory
    // it is a DMA that may still run (the caller waits for a Sync first).
    Record("cudaMemcpyAsync(host to device)",
           cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    Use();
    Record("cudaMemcpyAsync(device to host)",
           cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    return Sync();
  }
  void Zero(void* dst, size_t bytes) override {
    Use();
    Record("cudaMemsetAsync", cudaMemsetAsync(dst, 0, bytes, stream_));
  }
  Status Sync() override {
    Use();
    Record("cudaStreamSynchronize", cudaStreamSynchronize(stream_));
    Status kernels = kc::LastError();
    if (error_.ok()) error_ = kernels;
    Status out = error_;
    error_ = Status::Ok();
    return out.WithContext(name_);
  }

  void MarkReady(int slot) override {
    Use();
    Record("cudaEventRecord", cudaEventRecord(ready_.at(static_cast<size_t>(slot)), stream_));
  }
  Status WaitReady(int slot) override {
    // The communication thread: the device must be current for NCCL, and it
    // waits on the host for the compute stream to pass the mark.
    COHORT_RETURN_IF_ERROR(FromCuda(cudaSetDevice(device_), "cudaSetDevice"));
    return FromCuda(cudaEventSynchronize(ready_.at(static_cast<size_t>(slot))),
                    "waiting for gradients on " + name_);
  }

  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    Use();
    kc::Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void GemmMixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, DType ab,
                 const void* a, int64_t lda, const void* b, int64_t ldb, float beta, DType ct,
                 void* c, int64_t ldc) override {
    Use();
    kc::GemmMixed(ta, tb, m, n, k, alpha, ab, a, lda, b, ldb, beta, ct, c, ldc);
  }
  void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                      kernels::Activation act) override {
    Use();
    kc::BiasActForward(x, bias, y, rows, cols, act);
  }
  void ActForward(const float* z, float* y, int64_t n, kernels::Activation act) override {
    Use();
    kc::ActForward(z, y, n, act);
  }
  void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n,
                   kernels::Activation act) override {
    Use();
    kc::ActBackward(z_or_y, dy, dz, n, act);
  }
  void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) override {
    Use();
    kc::BiasGrad(dz, db, rows, cols);
  }
  void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols, float* mean_loss) override {
    Use();
    kc::SoftmaxCrossEntropyForward(logits, labels, probs, rows, cols, mean_loss);
  }
  void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float scale) override {
    Use();
    kc::SoftmaxCrossEntropyBackward(probs, labels, dlogits, rows, cols, scale);
  }
  void SgdMomentumUpdate(float* param, const float* grad, float* buf, int64_t n,
                         const kernels::SgdOptions& opt, bool first_step) override {
    Use();
    kc::SgdMomentumUpdate(param, grad, buf, n, opt, first_step);
  }
  void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                   const kernels::AdamWOptions& opt, int64_t step) override {
    Use();
    kc::AdamWUpdate(param, grad, m, v, n, opt, step);
  }
  void Scale(float* y, int64_t n, float s) override {
    Use();
    kc::Scale(y, n, s);
  }
  void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found) override {
    Use();
    kc::ScaleCheckFinite(y, n, s, found);
  }
  void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) override {
    Use();
    kc::CastFromFloat(in, half, out, n, scale);
  }
  void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) override {
    Use();
    kc::CastToFloat(half, in, out, n, scale);
  }

  void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                        int64_t B, int64_t T, int64_t C) override {
    Use();
    kc::EmbeddingForward(tokens, wte, wpe, out, B, T, C);
  }
  void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                         int64_t B, int64_t T, int64_t C) override {
    Use();
    kc::EmbeddingBackward(dout, tokens, dwte, dwpe, B, T, C);
  }
  void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                        float* rstd, int64_t rows, int64_t C, float eps) override {
    Use();
    kc::LayerNormForward(x, w, b, y, mean, rstd, rows, C, eps);
  }
  void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                         const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                         int64_t C) override {
    Use();
    kc::LayerNormBackward(dy, x, w, mean, rstd, dx, dw, db, rows, C);
  }
  void ResidualAdd(const float* a, const float* b, float* out, int64_t n) override {
    Use();
    kc::ResidualAdd(a, b, out, n);
  }
  void GeluForward(const float* x, float* y, int64_t n) override {
    Use();
    kc::GeluForward(x, y, n);
  }
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    Use();
    kc::GeluBackward(x, dy, dx, n);
  }
  void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                        int64_t NH) override {
    Use();
    kc::AttentionForward(qkv, out, att, B, T, C, NH);
  }
  void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                         float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) override {
    Use();
    kc::AttentionBackward(dout, qkv, att, dqkv, scratch, B, T, C, NH);
  }
  void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, float* mean_loss) override {
    Use();
    kc::CrossEntropyFused(logits, targets, dlogits, rows, V, grad_scale, mean_loss);
  }
  void SumSquares(const float* x, int64_t n, float* out) override {
    Use();
    kc::SumSquares(x, n, out);
  }

 private:
  explicit CudaCompute(int device) : device_(device) {}
  // Kernels go to the calling thread's stream: make it ours (cheap; the
  // trainer's thread is the only caller).
  void Use() {
    if (kc::Stream() != stream_) kc::SetStream(stream_);
  }
  void Record(const char* what, cudaError_t e) {
    if (e != cudaSuccess && error_.ok()) error_ = FromCuda(e, what);
  }

  int device_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::array<cudaEvent_t, kMaxReadySlots> ready_{};
  Status error_;  // the first failed runtime call since the last Sync
};

}  // namespace

Result<std::unique_ptr<Compute>> MakeCudaCompute(int device) { return CudaCompute::Create(device); }

}  // namespace cohort
