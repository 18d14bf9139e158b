#include "runtime/compute.h"

#include <cstring>

#include "cohort/config.h"
#include "kernels/cpu/transformer.h"

namespace cohort {
namespace {

// kernels/cpu behind the Compute interface: every call is done on return.
class CpuCompute final : public Compute {
 public:
  Device device() const override { return Device::kCpu; }
  std::string Describe() const override { return "cpu"; }
  Result<Tensor> Alloc(Shape shape, DType dtype) override {
    return Tensor::Empty(std::move(shape), dtype);
  }
  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0 && dst != src) std::memmove(dst, src, bytes);
  }
  Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0 && dst != src) std::memmove(dst, src, bytes);
    return Status::Ok();
  }
  void Zero(void* dst, size_t bytes) override {
    if (bytes > 0) std::memset(dst, 0, bytes);
  }
  Status Sync() override { return Status::Ok(); }

  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    kernels::Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void GemmMixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, DType ab,
                 const void* a, int64_t lda, const void* b, int64_t ldb, float beta, DType ct,
                 void* c, int64_t ldc) override {
    kernels::GemmMixed(ta, tb, m, n, k, alpha, ab, a, lda, b, ldb, beta, ct, c, ldc);
  }
  void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                      kernels::Activation act) override {
    kernels::BiasActForward(x, bias, y, rows, cols, act);
  }
  void ActForward(const float* z, float* y, int64_t n, kernels::Activation act) override {
    kernels::ActForward(z, y, n, act);
  }
  void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n,
                   kernels::Activation act) override {
    kernels::ActBackward(z_or_y, dy, dz, n, act);
  }
  void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) override {
    kernels::BiasGrad(dz, db, rows, cols);
  }
  void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols, float* mean_loss) override {
    kernels::SoftmaxCrossEntropyForward(logits, labels, probs, rows, cols, mean_loss);
  }
  void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float scale) override {
    kernels::SoftmaxCrossEntropyBackward(probs, labels, dlogits, rows, cols, scale);
  }
  void SgdMomentumUpdate(float* param, const float* grad, float* buf, int64_t n,
                         const kernels::SgdOptions& opt, bool first_step) override {
    kernels::SgdMomentumUpdate(param, grad, buf, n, opt, first_step);
  }
  void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                   const kernels::AdamWOptions& opt, int64_t step) override {
    kernels::AdamWUpdate(param, grad, m, v, n, opt, step);
  }
  void Scale(float* y, int64_t n, float s) override { kernels::Scale(y, n, s); }
  void ScaleCheckFinite(float* y, int64_t n, float s, int32_t* found) override {
    kernels::ScaleCheckFinite(y, n, s, found);
  }
  void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) override {
    kernels::CastFromFloat(in, half, out, n, scale);
  }
  void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) override {
    kernels::CastToFloat(half, in, out, n, scale);
  }

  void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                        int64_t B, int64_t T, int64_t C) override {
    kernels::EmbeddingForward(tokens, wte, wpe, out, B, T, C);
  }
  void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                         int64_t B, int64_t T, int64_t C) override {
    kernels::EmbeddingBackward(dout, tokens, dwte, dwpe, B, T, C);
  }
  void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                        float* rstd, int64_t rows, int64_t C, float eps) override {
    kernels::LayerNormForward(x, w, b, y, mean, rstd, rows, C, eps);
  }
  void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                         const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                         int64_t C) override {
    kernels::LayerNormBackward(dy, x, w, mean, rstd, dx, dw, db, rows, C);
  }
  void ResidualAdd(const float* a, const float* b, float* out, int64_t n) override {
    kernels::ResidualAdd(a, b, out, n);
  }
  void GeluForward(const float* x, float* y, int64_t n) override { kernels::GeluForward(x, y, n); }
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    kernels::GeluBackward(x, dy, dx, n);
  }
  void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                        int64_t NH) override {
    kernels::AttentionForward(qkv, out, att, B, T, C, NH);
  }
  void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                         float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) override {
    kernels::AttentionBackward(dout, qkv, att, dqkv, scratch, B, T, C, NH);
  }
  void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, float* mean_loss) override {
    kernels::CrossEntropyFused(logits, targets, dlogits, rows, V, grad_scale, mean_loss);
  }
  void SumSquares(const float* x, int64_t n, float* out) override {
    kernels::SumSquares(x, n, out);
  }
};

}  // namespace

Result<float> Compute::ReadFloat(const float* p) {
  float v = 0;
  COHORT_RETURN_IF_ERROR(CopyToHost(&v, p, sizeof(v)));
  return v;
}

Compute& HostCompute() {
  static CpuCompute* cpu = new CpuCompute();  // never destroyed: used until exit
  return *cpu;
}

#if !COHORT_HAVE_CUDA
Result<std::unique_ptr<Compute>> MakeCudaCompute(int device) {
  return FailedPrecondition(
      "train.device cuda (device " + std::to_string(device) +
      ") needs a build with CUDA; this one has none (reconfigure with nvcc on PATH and "
      "COHORT_ENABLE_CUDA=ON)");
}
#endif

}  // namespace cohort
