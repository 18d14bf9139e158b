// GPT training-step benchmark: GPT-2 124M's shape (12 layers, 12 heads,
// width 768, context 1024, vocabulary 50257 padded to 50304 as llm.c and
// nanoGPT pad it) in fp32, through the code that `cohort train --device cuda`
// runs each step for a GPT: runtime/gpt's ForwardBackwardTo, the gradient
// clipping of Trainer::ClipGradients (one SumSquares per parameter tensor,
// their sum on the host, one Scale), runtime/optimizer's AdamW, on a CUDA
// Compute. Timed on the host with a wait for the device after each step, as
// the Trainer waits for the loss; the batch's host-to-device copy and NCCL
// are left out. The same model, batch, precision and optimizer as
// bench/gpu/torch_gpt.py (PyTorch eager fp32, TF32 off), which
// scripts/gpu-check runs in the same session.
//
// Reports ms/step (median), tokens/s and TFLOP/s (nanoGPT's estimate: 6 N
// per token for the N parameters, plus 12 L C T per token for attention),
// and the device memory in use (the whole device) after the first steps.
//
//   gpt_bench [--json PATH] [--steps N] [--batch B] [--context T] [--layers L]
//             [--heads H] [--width C] [--vocab V] [--clip X] [--cpu]
//
// --cpu runs on the CPU (HostCompute): a check of this program where there
// is no GPU, e.g. `gpt_bench --cpu --layers 2 --width 64 --heads 2 --context
// 64 --vocab 256 --batch 2 --steps 2`; its figures are not a CPU benchmark.
// Exit 3 when there is no CUDA device, 2 when the run fails.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.h"
#include "runtime/compute.h"
#include "runtime/gpt.h"
#include "runtime/optimizer.h"

namespace {

using cohort::Compute;
using cohort::DType;
using cohort::Status;

// GPT-2's tokenizer has 50257 tokens; the embedding is padded to a multiple
// of 128 for the GEMMs. Batches draw from the real vocabulary only.
constexpr int64_t kGpt2Vocab = 50257;

struct Options {
  std::string json_path;
  int steps = 10;
  int64_t batch = 8, context = 1024, layers = 12, heads = 12, width = 768, vocab = 50304;
  float clip = 1.0f;  // 0: no clipping
  bool cpu = false;   // HostCompute instead: a smoke test of this program on a small shape
};

struct BenchResult {
  double ms = 0;
  float first_loss = 0, last_loss = 0;
  double memory_gib = 0;
  int64_t params = 0;
  std::string device;
  std::string error;  // empty: ran
};

// train.clip_grad_norm as Trainer::ClipGradients does it on one rank.
Status Clip(Compute& c, const cohort::Model& model, float* grads, float* parts, float max_norm) {
  const auto& info = model.params();
  c.Zero(parts, info.size() * 4);
  for (size_t i = 0; i < info.size(); ++i) {
    int64_t count = 1;
    for (int64_t d : info[i].shape) count *= d;
    c.SumSquares(grads + info[i].offset, count, parts + i);
  }
  std::vector<float> host(info.size());
  COHORT_RETURN_IF_ERROR(c.CopyToHost(host.data(), parts, host.size() * 4));
  double sumsq = 0;
  for (float v : host) sumsq += v;
  const double coef = max_norm / (std::sqrt(sumsq) + 1e-6);
  if (coef < 1.0) c.Scale(grads, model.num_params(), static_cast<float>(coef));
  return Status::Ok();
}

// The model's initial parameters, and one fixed batch of random windows
// (the loss falls as the model learns it) into x (inputs) and y (targets).
Status UploadInitAndBatch(Compute& c, const cohort::Gpt& model, const Options& o, void* params,
                          void* x, void* y) {
  const int64_t tokens = o.batch * o.context;
  std::vector<float> h(static_cast<size_t>(model.num_params()));
  model.Init(h.data(), 1);
  c.CopyToDevice(params, h.data(), h.size() * 4);
  std::mt19937 rng(2);
  std::vector<int32_t> stream(static_cast<size_t>(tokens + o.batch));
  for (auto& t : stream) t = static_cast<int32_t>(rng() % std::min(o.vocab, kGpt2Vocab));
  std::vector<int32_t> hx, hy;
  for (int64_t b = 0; b < o.batch; ++b) {
    const auto at = stream.begin() + b * (o.context + 1);
    hx.insert(hx.end(), at, at + o.context);
    hy.insert(hy.end(), at + 1, at + o.context + 1);
  }
  c.CopyToDevice(x, hx.data(), hx.size() * 4);
  c.CopyToDevice(y, hy.data(), hy.size() * 4);
  return c.Sync();
}

BenchResult Run(const Options& o) {
  BenchResult out;
  std::unique_ptr<Compute> gpu;
  if (!o.cpu) {
    auto made = cohort::MakeCudaCompute(0);
    if (!made.ok()) {
      out.error = made.status().ToString();
      return out;
    }
    gpu = std::move(made).value();
  }
  Compute& c = o.cpu ? cohort::HostCompute() : *gpu;
  out.device = c.Describe();
  cohort::GptConfig m;
  m.vocab = o.vocab;
  m.context = o.context;
  m.layers = o.layers;
  m.heads = o.heads;
  m.width = o.width;
  if (m.width % m.heads != 0) {
    out.error = "--width must divide by --heads";
    return out;
  }
  cohort::Gpt model(m, nullptr, &c);
  const int64_t n = model.num_params();
  out.params = n;
  cohort::OptimizerConfig oc;  // nanoGPT's GPT-2 settings
  oc.type = cohort::OptimizerType::kAdamW;
  oc.lr = 6e-4f;
  oc.beta2 = 0.95f;
  oc.weight_decay = 0.1f;
  auto opt = cohort::MakeOptimizer(oc, n, &c);
  const int64_t tokens = o.batch * o.context;
  auto params = c.Alloc({n}, DType::kF32);
  auto grads = c.Alloc({n}, DType::kF32);
  auto x = c.Alloc({tokens}, DType::kI32);
  auto y = c.Alloc({tokens}, DType::kI32);
  auto loss = c.Alloc({1}, DType::kF32);
  auto parts = c.Alloc({static_cast<int64_t>(model.params().size())}, DType::kF32);
  if (!opt.ok() || !params.ok() || !grads.ok() || !x.ok() || !y.ok() || !loss.ok() || !parts.ok()) {
    out.error = "allocation failed on " + c.Describe();
    return out;
  }
  if (Status s = UploadInitAndBatch(c, model, o, params->raw(), x->raw(), y->raw()); !s.ok()) {
    out.error = s.ToString();
    return out;
  }
  Status failed;
  auto note = [&](const Status& s) {
    if (!s.ok() && failed.ok()) failed = s;
  };
  auto step = [&] {
    note(model.ForwardBackwardTo(params->data<float>(), x->raw(), y->data<int32_t>(), o.batch,
                                 grads->data<float>(), loss->data<float>(), nullptr, nullptr,
                                 nullptr));
    if (o.clip > 0) note(Clip(c, model, grads->data<float>(), parts->data<float>(), o.clip));
    (*opt)->Step(params->data<float>(), grads->data<float>());
    note(c.Sync());
  };
  auto read_loss = [&] {
    auto v = c.ReadFloat(loss->data<float>());
    return v.ok() ? *v : std::nanf("");
  };
  step();
  out.first_loss = read_loss();
  for (int i = 0; i < 2; ++i) step();
  size_t free_b = 0, total_b = 0;
  if (!o.cpu && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    out.memory_gib = static_cast<double>(total_b - free_b) / (1024.0 * 1024.0 * 1024.0);
  }
  std::vector<double> ms;
  for (int i = 0; i < o.steps; ++i) {
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

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const bool more = i + 1 < argc;
    if (!std::strcmp(argv[i], "--json") && more)
      o.json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--steps") && more)
      o.steps = std::stoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--batch") && more)
      o.batch = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--context") && more)
      o.context = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--layers") && more)
      o.layers = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--heads") && more)
      o.heads = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--width") && more)
      o.width = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--vocab") && more)
      o.vocab = std::stoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--clip") && more)
      o.clip = std::stof(argv[++i]);
    else if (!std::strcmp(argv[i], "--cpu"))
      o.cpu = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--json PATH] [--steps N] [--batch B] [--context T] [--layers L] "
                   "[--heads H] [--width C] [--vocab V] [--clip X] [--cpu]\n",
                   argv[0]);
      return 1;
    }
  }
  if (o.steps < 1 || o.batch < 1 || o.context < 1 || o.layers < 1 || o.heads < 1 || o.width < 1 ||
      o.vocab < 2) {
    std::fprintf(stderr, "gpt_bench: every size must be at least 1 (vocab at least 2)\n");
    return 1;
  }
  if (!o.cpu) cohort::bench::RequireDevice("gpt_bench");
  const BenchResult r = Run(o);
  if (!r.error.empty()) {
    std::fprintf(stderr, "gpt_bench: %s\n", r.error.c_str());
    return 2;
  }
  const double tokens = static_cast<double>(o.batch * o.context);
  const double flops_per_token = 6.0 * static_cast<double>(r.params) +
                                 12.0 * static_cast<double>(o.layers * o.width * o.context);
  const double tokens_per_s = tokens / r.ms * 1e3;
  const double tflops = flops_per_token * tokens / r.ms / 1e9;
  std::printf(
      "Cohort GPT step (%lld layers, %lld heads, width %lld, context %lld, vocab %lld: %.1f M "
      "parameters; batch %lld, fp32, AdamW%s) on %s: %.2f ms/step, %.0f tokens/s, %.1f TFLOP/s, "
      "%.1f GiB in use; loss %.4f -> %.4f\n",
      (long long)o.layers, (long long)o.heads, (long long)o.width, (long long)o.context,
      (long long)o.vocab, static_cast<double>(r.params) / 1e6, (long long)o.batch,
      o.clip > 0 ? ", clipping" : "", r.device.c_str(), r.ms, tokens_per_s, tflops, r.memory_gib,
      r.first_loss, r.last_loss);
  if (!o.json_path.empty()) {
    FILE* f = std::fopen(o.json_path.c_str(), "w");
    if (f == nullptr) {
      std::perror(o.json_path.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\"impl\": \"cohort\", \"layers\": %lld, \"heads\": %lld, \"width\": %lld, "
                 "\"context\": %lld, \"vocab\": %lld, \"params\": %lld, \"batch\": %lld, "
                 "\"clip\": %.3f, \"ms_per_step\": %.4f, \"tokens_per_s\": %.1f, \"TFLOPs\": %.2f, "
                 "\"memory_gib\": %.2f, \"loss_first\": %.5f, \"loss_last\": %.5f}\n",
                 (long long)o.layers, (long long)o.heads, (long long)o.width, (long long)o.context,
                 (long long)o.vocab, (long long)r.params, (long long)o.batch, o.clip, r.ms,
                 tokens_per_s, tflops, r.memory_gib, r.first_loss, r.last_loss);
    std::fclose(f);
  }
  return 0;
}
