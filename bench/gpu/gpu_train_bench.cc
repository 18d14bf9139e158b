// Training-step benchmark: an MLP of 4 Linear layers 4096 -> 4096 (ReLU
// between them, softmax cross-entropy over 4096 classes at the end), batch
// 1024, bf16 GEMMs with fp32 accumulation and fp32 master weights, AdamW.
// One step = cast weights to bf16, forward, backward, one multi-tensor AdamW
// launch; everything on one stream, no host synchronisation inside a step.
// The same model and precision as bench/gpu/torch_mlp.py (PyTorch eager,
// autocast bf16), which scripts/gpu-check runs in the same session.
//
// Two Cohort figures: "kernels", the step written straight over kernels/cuda
// (weights cast in one launch, multi-tensor AdamW), timed with CUDA events;
// and "trainer", the same model, batch and precision through the code that
// `cohort train --device cuda` runs each step (runtime/mlp's
// ForwardBackwardTo, runtime/optimizer, the 16-bit weight cast, on a CUDA
// Compute), timed on the host with a wait for the device after each step, as
// the Trainer waits for the loss. The trainer figure leaves out the batch's
// host-to-device copy and NCCL.
//
//   gpu_train_bench [--json PATH] [--steps N] [--width W] [--batch B] [--layers L]
//
// Exit 3 when there is no CUDA device.

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <algorithm>
#include <chrono>

#include "bench/gpu/bench_util.h"
#include "kernels/cuda/kernels.h"
#include "runtime/compute.h"
#include "runtime/mlp.h"
#include "runtime/optimizer.h"

namespace kc = cohort::kernels::cuda;
using cohort::DType;
using cohort::kernels::Activation;

namespace {

template <typename T>
T* DeviceAlloc(size_t n) {
  T* p = nullptr;
  BENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
  BENCH_CUDA(cudaMemset(p, 0, n * sizeof(T)));
  return p;
}

void Upload(float* d, const std::vector<float>& h) {
  BENCH_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
}

struct TrainerPath {
  double ms = 0;
  float first_loss = 0, last_loss = 0;
  std::string error;  // empty: ran
};

// The Trainer's per-step code on a CUDA Compute: W-wide layers, ReLU, bf16
// GEMMs, fp32 master weights, AdamW over the flat parameter buffer.
TrainerPath RunTrainerPath(int64_t W, int L, int64_t B, int steps) {
  TrainerPath out;
  auto compute = cohort::MakeCudaCompute(0);
  if (!compute.ok()) {
    out.error = compute.status().ToString();
    return out;
  }
  cohort::Compute& c = **compute;
  cohort::Mlp model(std::vector<int64_t>(static_cast<size_t>(L + 1), W), Activation::kRelu, nullptr, &c);
  const int64_t n = model.num_params();
  cohort::OptimizerConfig oc;
  oc.type = cohort::OptimizerType::kAdamW;
  oc.lr = 1e-4f;
  oc.weight_decay = 0.01f;
  auto opt = cohort::MakeOptimizer(oc, n, &c);
  auto params = c.Alloc({n}, DType::kF32);
  auto grads = c.Alloc({n}, DType::kF32);
  auto params16 = c.Alloc({n}, DType::kBF16);
  auto x = c.Alloc({B * W}, DType::kF32);
  auto y = c.Alloc({B}, DType::kI32);
  auto loss = c.Alloc({1}, DType::kF32);
  if (!opt.ok() || !params.ok() || !grads.ok() || !params16.ok() || !x.ok() || !y.ok() || !loss.ok()) {
    out.error = "allocation failed on " + c.Describe();
    return out;
  }
  {
    std::vector<float> h(static_cast<size_t>(n));
    model.Init(h.data(), 1);
    c.CopyToDevice(params->raw(), h.data(), h.size() * 4);
    std::mt19937 rng(2);
    std::normal_distribution<float> nd;
    std::vector<float> hx(static_cast<size_t>(B * W));
    for (auto& v : hx) v = nd(rng);
    c.CopyToDevice(x->raw(), hx.data(), hx.size() * 4);
    std::vector<int32_t> hy(static_cast<size_t>(B));
    for (auto& v : hy) v = static_cast<int32_t>(rng() % W);
    c.CopyToDevice(y->raw(), hy.data(), hy.size() * 4);
  }
  cohort::Precision p;
  p.compute = DType::kBF16;
  p.params16 = params16->data<uint16_t>();
  cohort::Status failed;
  auto step = [&] {
    c.CastFromFloat(params->data<float>(), DType::kBF16, params16->raw(), n, 1.0f);
    cohort::Status s = model.ForwardBackwardTo(params->data<float>(), x->data<float>(), y->data<int32_t>(), B,
                                               grads->data<float>(), loss->data<float>(), nullptr, nullptr, &p);
    if (!s.ok() && failed.ok()) failed = s;
    (*opt)->Step(params->data<float>(), grads->data<float>());
    s = c.Sync();
    if (!s.ok() && failed.ok()) failed = s;
  };
  auto read_loss = [&] {
    auto v = c.ReadFloat(loss->data<float>());
    return v.ok() ? *v : std::nanf("");
  };
  step();
  out.first_loss = read_loss();
  for (int i = 0; i < 5; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  out.ms = ms[ms.size() / 2];
  out.last_loss = read_loss();
  if (!failed.ok()) out.error = failed.ToString();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  int steps = 20, layers = 4;
  int64_t width = 4096, batch = 1024;
  for (int i = 1; i < argc; ++i) {
    const bool more = i + 1 < argc;
    if (!std::strcmp(argv[i], "--json") && more) json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--steps") && more) steps = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--width") && more) width = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && more) batch = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--layers") && more) layers = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--json PATH] [--steps N] [--width W] [--batch B] [--layers L]\n", argv[0]);
      return 1;
    }
  }
  cohort::bench::RequireDevice("gpu_train_bench");
  const int64_t W = width, B = batch, L = layers, wn = W * W;

  // Parameters: all weights in one buffer (one cast launch per step), biases.
  float* w = DeviceAlloc<float>(size_t(L * wn));
  float* b = DeviceAlloc<float>(size_t(L * W));
  float* dw = DeviceAlloc<float>(size_t(L * wn));
  float* db = DeviceAlloc<float>(size_t(L * W));
  float *mw = DeviceAlloc<float>(size_t(L * wn)), *vw = DeviceAlloc<float>(size_t(L * wn));
  float *mb = DeviceAlloc<float>(size_t(L * W)), *vb = DeviceAlloc<float>(size_t(L * W));
  void* wbf = DeviceAlloc<uint16_t>(size_t(L * wn));
  {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(W)), 1.0f / std::sqrt(float(W)));
    std::vector<float> h(size_t(L * wn));
    for (auto& x : h) x = u(rng);
    Upload(w, h);
  }
  // Activations: x[l] in bf16 (the GEMM input of layer l), y[l] in fp32
  // (pre-activation, then activation in place; ReLU's mask is y > 0).
  std::vector<void*> xbf(static_cast<size_t>(L));
  std::vector<float*> y(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    xbf[l] = DeviceAlloc<uint16_t>(size_t(B * W));
    y[l] = DeviceAlloc<float>(size_t(B * W));
  }
  void* dzbf = DeviceAlloc<uint16_t>(size_t(B * W));
  float* dx = DeviceAlloc<float>(size_t(B * W));
  float* probs = DeviceAlloc<float>(size_t(B * W));  // logits and probs must not alias
  float* loss = DeviceAlloc<float>(1);
  int32_t* labels = DeviceAlloc<int32_t>(static_cast<size_t>(B));
  {
    std::mt19937 rng(2);
    std::normal_distribution<float> nd;
    std::vector<float> h(size_t(B * W));
    for (auto& x : h) x = nd(rng);
    float* x0 = DeviceAlloc<float>(h.size());
    Upload(x0, h);
    kc::CastFromFloat(x0, DType::kBF16, xbf[0], B * W, 1.0f);
    std::vector<int32_t> lab(static_cast<size_t>(B));
    for (auto& x : lab) x = static_cast<int32_t>(rng() % W);
    BENCH_CUDA(cudaMemcpy(labels, lab.data(), lab.size() * 4, cudaMemcpyHostToDevice));
  }
  std::vector<kc::AdamWTensor> params;
  for (int64_t l = 0; l < L; ++l) params.push_back({w + l * wn, dw + l * wn, mw + l * wn, vw + l * wn, wn});
  for (int64_t l = 0; l < L; ++l) params.push_back({b + l * W, db + l * W, mb + l * W, vb + l * W, W});
  const cohort::kernels::AdamWOptions adam{1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f};
  int64_t step = 0;
  const auto bf = DType::kBF16, f32 = DType::kF32;

  auto train_step = [&] {
    kc::CastFromFloat(w, bf, wbf, L * wn, 1.0f);
    for (int64_t l = 0; l < L; ++l) {
      const void* wl = static_cast<const uint16_t*>(wbf) + l * wn;
      // y = x W^T (W is out x in, row-major), then bias + activation in place.
      kc::GemmMixed(false, true, B, W, W, 1.0f, bf, xbf[l], W, wl, W, 0.0f, f32, y[l], W);
      kc::BiasActForward(y[l], b + l * W, y[l], B, W, l + 1 < L ? Activation::kRelu : Activation::kNone);
      if (l + 1 < L) kc::CastFromFloat(y[l], bf, xbf[l + 1], B * W, 1.0f);
    }
    kc::SoftmaxCrossEntropyForward(y[L - 1], labels, probs, B, W, loss);
    kc::SoftmaxCrossEntropyBackward(probs, labels, probs, B, W, 1.0f / float(B));  // in place
    float* dz = probs;
    for (int64_t l = L - 1; l >= 0; --l) {
      if (l + 1 < L) kc::ActBackward(y[l], dz, dz, B * W, Activation::kRelu);
      kc::BiasGrad(dz, db + l * W, B, W);
      kc::CastFromFloat(dz, bf, dzbf, B * W, 1.0f);
      // dW = dz^T x (fp32, straight into the master gradient); dx = dz W.
      kc::GemmMixed(true, false, W, W, B, 1.0f, bf, dzbf, W, xbf[l], W, 0.0f, f32, dw + l * wn, W);
      if (l > 0) {
        const void* wl = static_cast<const uint16_t*>(wbf) + l * wn;
        kc::GemmMixed(false, false, B, W, W, 1.0f, bf, dzbf, W, wl, W, 0.0f, f32, dx, W);
        dz = dx;
      }
    }
    kc::MultiTensorAdamWUpdate(params.data(), static_cast<int>(params.size()), adam, ++step);
  };

  auto read_loss = [&] {
    float h = 0;
    BENCH_CUDA(cudaMemcpy(&h, loss, 4, cudaMemcpyDeviceToHost));
    return h;
  };
  train_step();
  const float first_loss = read_loss();
  const double ms = cohort::bench::MedianMs(train_step, steps, 5);
  const float last_loss = read_loss();
  BENCH_CUDA(cudaDeviceSynchronize());
  const cohort::Status st = kc::LastError();
  if (!st.ok()) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", st.ToString().c_str());
    return 2;
  }
  // Forward 2BWW a layer, backward 4BWW (dW and dx; layer 0 needs no dx).
  const double flops = 2.0 * B * W * W * L + 4.0 * B * W * W * L - 2.0 * B * W * W;
  const TrainerPath tp = RunTrainerPath(W, static_cast<int>(L), B, steps);
  if (!tp.error.empty()) {
    std::fprintf(stderr, "gpu_train_bench: the trainer path failed: %s\n", tp.error.c_str());
    return 2;
  }
  std::printf("Cohort trainer path (runtime/mlp + optimizer on a CUDA Compute, same model): %.3f ms/step, "
              "%.0f samples/s, %.1f TFLOP/s; loss %.4f -> %.4f\n",
              tp.ms, B / tp.ms * 1e3, flops / tp.ms / 1e9, tp.first_loss, tp.last_loss);
  std::printf("\nCohort MLP step (%lld x %lld, %lld layers, batch %lld, bf16 GEMMs, fp32 master, AdamW): "
              "%.3f ms/step, %.0f samples/s, %.1f TFLOP/s; loss %.4f -> %.4f\n",
              (long long)W, (long long)W, (long long)L, (long long)B, ms, B / ms * 1e3, flops / ms / 1e9,
              first_loss, last_loss);
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::perror(json_path.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"impl\": \"cohort\", \"width\": %lld, \"layers\": %lld, \"batch\": %lld, \"ms_per_step\": %.4f, "
                 "\"samples_per_s\": %.1f, \"TFLOPs\": %.2f, \"loss_first\": %.5f, \"loss_last\": %.5f, "
                 "\"trainer_ms_per_step\": %.4f, \"trainer_samples_per_s\": %.1f, \"trainer_TFLOPs\": %.2f, "
                 "\"trainer_loss_first\": %.5f, \"trainer_loss_last\": %.5f}\n",
                 (long long)W, (long long)L, (long long)B, ms, B / ms * 1e3, flops / ms / 1e9, first_loss, last_loss,
                 tp.ms, B / tp.ms * 1e3, flops / tp.ms / 1e9, tp.first_loss, tp.last_loss);
    std::fclose(f);
  }
  return 0;
}
