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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

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
  cohort::Mlp model(std::vector<int64_t>(static_cast<size_t>(L + 1), W), Activation::kRelu, nullptr,
                    &c);
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
  if (!opt.ok() || !params.ok() || !grads.ok() || !params16.ok() || !x.ok() || !y.ok() ||
      !loss.ok()) {
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
    cohort::Status s =
        model.ForwardBackwardTo(params->data<float>(), x->data<float>(), y->data<int32_t>(), B,
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
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  out.ms = ms[ms.size() / 2];
  out.last_loss = read_loss();
  if (!failed.ok()) out.error = failed.ToString();
  return out;
}

// Command-line settings.
struct Args {
  std::string json_path;
  int steps = 20, layers = 4;
  int64_t width = 4096, batch = 1024;
};

// False (after printing the usage) on an unknown flag.
bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const bool more = i + 1 < argc;
    if (!std::strcmp(argv[i], "--json") && more)
      a->json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--steps") && more)
      a->steps = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--width") && more)
      a->width = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && more)
      a->batch = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--layers") && more)
      a->layers = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: %s [--json PATH] [--steps N] [--width W] [--batch B] [--layers L]\n",
                   argv[0]);
      return false;
    }
  }
  return true;
}

// The "kernels" figure's model: L W-wide layers over batch B, in device memory.
struct KernelMlp {
  int64_t W = 0, L = 0, B = 0, wn = 0;
  // Parameters: all weights in one buffer (one cast launch per step), biases;
  // their gradients and AdamW moments; the weights' bf16 copy.
  float *w = nullptr, *b = nullptr, *dw = nullptr, *db = nullptr;
  float *mw = nullptr, *vw = nullptr, *mb = nullptr, *vb = nullptr;
  void* wbf = nullptr;
  // Activations: x[l] in bf16 (the GEMM input of layer l), y[l] in fp32
  // (pre-activation, then activation in place; ReLU's mask is y > 0).
  std::vector<void*> xbf;
  std::vector<float*> y;
  void* dzbf = nullptr;
  float* dx = nullptr;
  float* probs = nullptr;  // logits and probs must not alias
  float* loss = nullptr;
  int32_t* labels = nullptr;
  std::vector<kc::AdamWTensor> params;
  int64_t step = 0;
};

KernelMlp MakeKernelMlp(int64_t W, int64_t L, int64_t B) {
  KernelMlp m;
  m.W = W, m.L = L, m.B = B, m.wn = W * W;
  const int64_t wn = m.wn;
  m.w = DeviceAlloc<float>(size_t(L * wn));
  m.b = DeviceAlloc<float>(size_t(L * W));
  m.dw = DeviceAlloc<float>(size_t(L * wn));
  m.db = DeviceAlloc<float>(size_t(L * W));
  m.mw = DeviceAlloc<float>(size_t(L * wn)), m.vw = DeviceAlloc<float>(size_t(L * wn));
  m.mb = DeviceAlloc<float>(size_t(L * W)), m.vb = DeviceAlloc<float>(size_t(L * W));
  m.wbf = DeviceAlloc<uint16_t>(size_t(L * wn));
  {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(W)),
                                            1.0f / std::sqrt(float(W)));
    std::vector<float> h(size_t(L * wn));
    for (auto& x : h) x = u(rng);
    Upload(m.w, h);
  }
  m.xbf.resize(static_cast<size_t>(L));
  m.y.resize(static_cast<size_t>(L));
  for (int64_t l = 0; l < L; ++l) {
    m.xbf[l] = DeviceAlloc<uint16_t>(size_t(B * W));
    m.y[l] = DeviceAlloc<float>(size_t(B * W));
  }
  m.dzbf = DeviceAlloc<uint16_t>(size_t(B * W));
  m.dx = DeviceAlloc<float>(size_t(B * W));
  m.probs = DeviceAlloc<float>(size_t(B * W));
  m.loss = DeviceAlloc<float>(1);
  m.labels = DeviceAlloc<int32_t>(static_cast<size_t>(B));
  {
    std::mt19937 rng(2);
    std::normal_distribution<float> nd;
    std::vector<float> h(size_t(B * W));
    for (auto& x : h) x = nd(rng);
    float* x0 = DeviceAlloc<float>(h.size());
    Upload(x0, h);
    kc::CastFromFloat(x0, DType::kBF16, m.xbf[0], B * W, 1.0f);
    std::vector<int32_t> lab(static_cast<size_t>(B));
    for (auto& x : lab) x = static_cast<int32_t>(rng() % W);
    BENCH_CUDA(cudaMemcpy(m.labels, lab.data(), lab.size() * 4, cudaMemcpyHostToDevice));
  }
  for (int64_t l = 0; l < L; ++l) {
    m.params.push_back({m.w + l * wn, m.dw + l * wn, m.mw + l * wn, m.vw + l * wn, wn});
  }
  for (int64_t l = 0; l < L; ++l)
    m.params.push_back({m.b + l * W, m.db + l * W, m.mb + l * W, m.vb + l * W, W});
  return m;
}

// One training step, all launches on the default stream.
void KernelStep(KernelMlp& m) {
  static const cohort::kernels::AdamWOptions adam{1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f};
  const auto bf = DType::kBF16, f32 = DType::kF32;
  const int64_t W = m.W, L = m.L, B = m.B, wn = m.wn;
  kc::CastFromFloat(m.w, bf, m.wbf, L * wn, 1.0f);
  for (int64_t l = 0; l < L; ++l) {
    const void* wl = static_cast<const uint16_t*>(m.wbf) + l * wn;
    // y = x W^T (W is out x in, row-major), then bias + activation in place.
    kc::GemmMixed(false, true, B, W, W, 1.0f, bf, m.xbf[l], W, wl, W, 0.0f, f32, m.y[l], W);
    kc::BiasActForward(m.y[l], m.b + l * W, m.y[l], B, W,
                       l + 1 < L ? Activation::kRelu : Activation::kNone);
    if (l + 1 < L) kc::CastFromFloat(m.y[l], bf, m.xbf[l + 1], B * W, 1.0f);
  }
  kc::SoftmaxCrossEntropyForward(m.y[L - 1], m.labels, m.probs, B, W, m.loss);
  kc::SoftmaxCrossEntropyBackward(m.probs, m.labels, m.probs, B, W, 1.0f / float(B));  // in place
  float* dz = m.probs;
  for (int64_t l = L - 1; l >= 0; --l) {
    if (l + 1 < L) kc::ActBackward(m.y[l], dz, dz, B * W, Activation::kRelu);
    kc::BiasGrad(dz, m.db + l * W, B, W);
    kc::CastFromFloat(dz, bf, m.dzbf, B * W, 1.0f);
    // dW = dz^T x (fp32, straight into the master gradient); dx = dz W.
    kc::GemmMixed(true, false, W, W, B, 1.0f, bf, m.dzbf, W, m.xbf[l], W, 0.0f, f32, m.dw + l * wn,
                  W);
    if (l > 0) {
      const void* wl = static_cast<const uint16_t*>(m.wbf) + l * wn;
      kc::GemmMixed(false, false, B, W, W, 1.0f, bf, m.dzbf, W, wl, W, 0.0f, f32, m.dx, W);
      dz = m.dx;
    }
  }
  kc::MultiTensorAdamWUpdate(m.params.data(), static_cast<int>(m.params.size()), adam, ++m.step);
}

struct KernelPath {
  double ms = 0;
  float first_loss = 0, last_loss = 0;
  std::string error;  // empty: ran
};

// The step written straight over kernels/cuda, timed with CUDA events.
KernelPath RunKernelPath(int64_t W, int64_t L, int64_t B, int steps) {
  KernelMlp m = MakeKernelMlp(W, L, B);
  auto read_loss = [&] {
    float h = 0;
    BENCH_CUDA(cudaMemcpy(&h, m.loss, 4, cudaMemcpyDeviceToHost));
    return h;
  };
  KernelPath out;
  KernelStep(m);
  out.first_loss = read_loss();
  out.ms = cohort::bench::MedianMs([&] { KernelStep(m); }, steps, 5);
  out.last_loss = read_loss();
  BENCH_CUDA(cudaDeviceSynchronize());
  const cohort::Status st = kc::LastError();
  if (!st.ok()) out.error = st.ToString();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) return 1;
  cohort::bench::RequireDevice("gpu_train_bench");
  const int64_t W = args.width, B = args.batch, L = args.layers;
  const int steps = args.steps;
  const KernelPath kp = RunKernelPath(W, L, B, steps);
  if (!kp.error.empty()) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", kp.error.c_str());
    return 2;
  }
  const double ms = kp.ms;
  const float first_loss = kp.first_loss, last_loss = kp.last_loss;
  const std::string& json_path = args.json_path;
  // Forward 2BWW a layer, backward 4BWW (dW and dx; layer 0 needs no dx).
  const double flops = 2.0 * B * W * W * L + 4.0 * B * W * W * L - 2.0 * B * W * W;
  const TrainerPath tp = RunTrainerPath(W, static_cast<int>(L), B, steps);
  if (!tp.error.empty()) {
    std::fprintf(stderr, "gpu_train_bench: the trainer path failed: %s\n", tp.error.c_str());
    return 2;
  }
  std::printf(
      "Cohort trainer path (runtime/mlp + optimizer on a CUDA Compute, same model): %.3f ms/step, "
      "%.0f samples/s, %.1f TFLOP/s; loss %.4f -> %.4f\n",
      tp.ms, B / tp.ms * 1e3, flops / tp.ms / 1e9, tp.first_loss, tp.last_loss);
  std::printf(
      "\nCohort MLP step (%lld x %lld, %lld layers, batch %lld, bf16 GEMMs, fp32 master, AdamW): "
      "%.3f ms/step, %.0f samples/s, %.1f TFLOP/s; loss %.4f -> %.4f\n",
      (long long)W, (long long)W, (long long)L, (long long)B, ms, B / ms * 1e3, flops / ms / 1e9,
      first_loss, last_loss);
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::perror(json_path.c_str());
      return 1;
    }
    std::fprintf(
        f,
        "{\"impl\": \"cohort\", \"width\": %lld, \"layers\": %lld, \"batch\": %lld, "
        "\"ms_per_step\": %.4f, "
        "\"samples_per_s\": %.1f, \"TFLOPs\": %.2f, \"loss_first\": %.5f, \"loss_last\": %.5f, "
        "\"trainer_ms_per_step\": %.4f, \"trainer_samples_per_s\": %.1f, \"trainer_TFLOPs\": %.2f, "
        "\"trainer_loss_first\": %.5f, \"trainer_loss_last\": %.5f}\n",
        (long long)W, (long long)L, (long long)B, ms, B / ms * 1e3, flops / ms / 1e9, first_loss,
        last_loss, tp.ms, B / tp.ms * 1e3, flops / tp.ms / 1e9, tp.first_loss, tp.last_loss);
    std::fclose(f);
  }
  return 0;
}
