// Kernel benchmark: device-to-device copy bandwidth, then the GB/s of each
// memory-bound Cohort kernel and its ratio to that copy (bytes counted as the
// kernel must read plus write them), and GEMM TFLOP/s at 4096^3.
//
//   gpu_kernel_bench [--json PATH] [--elements N]
//
// Prints a table; with --json writes the figures as one JSON object.
// Exit 3 when there is no CUDA device.

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/gpu/bench_util.h"
#include "kernels/cuda/kernels.h"

namespace kc = cohort::kernels::cuda;
using cohort::DType;
using cohort::bench::MedianMs;

namespace {

struct Row {
  std::string name;
  double ms;
  double bytes;  // moved per call (read + written)
  double flops;  // 0 for memory-bound kernels
};

float* Alloc(size_t n, float fill) {
  float* p = nullptr;
  BENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)));
  std::vector<float> h(n, fill);
  BENCH_CUDA(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return p;
}

// Device-to-device copy (the first row, the others' yardstick; its time in
// *copy_ms_out) and the memory-bound kernels over n-element buffers.
std::vector<Row> MemoryBoundRows(size_t n, double* copy_ms_out) {
  const double fbytes = static_cast<double>(n) * 4;
  float *p = Alloc(n, 0.5f), *g = Alloc(n, 0.01f), *m = Alloc(n, 0.0f), *v = Alloc(n, 0.0f);
  float* flat = Alloc(n, 0.0f);
  void* half = nullptr;
  BENCH_CUDA(cudaMalloc(&half, n * 2));
  int32_t* flag = nullptr;
  BENCH_CUDA(cudaMalloc(reinterpret_cast<void**>(&flag), sizeof(int32_t)));
  BENCH_CUDA(cudaMemset(flag, 0, sizeof(int32_t)));

  // The model's parameters as 8 tensors (multi-tensor kernels see a list).
  constexpr int kTensors = 8;
  const int64_t per = static_cast<int64_t>(n / kTensors);
  std::vector<kc::AdamWTensor> adam;
  std::vector<kc::SgdTensor> sgd;
  std::vector<const float*> srcs;
  std::vector<float*> dsts;
  std::vector<int64_t> counts;
  for (int i = 0; i < kTensors; ++i) {
    const int64_t o = i * per;
    adam.push_back({p + o, g + o, m + o, v + o, per});
    sgd.push_back({p + o, g + o, m + o, per});
    srcs.push_back(g + o);
    dsts.push_back(g + o);
    counts.push_back(per);
  }
  const double elems = static_cast<double>(per) * kTensors;

  std::vector<Row> rows;
  const int reps = 20;
  const double copy_ms = MedianMs(
      [&] { BENCH_CUDA(cudaMemcpyAsync(flat, p, n * 4, cudaMemcpyDeviceToDevice)); }, reps);
  rows.push_back({"copy (cudaMemcpy D2D)", copy_ms, 2 * fbytes, 0});
  int64_t step = 1;
  const cohort::kernels::AdamWOptions ao;
  rows.push_back(
      {"adamw (multi-tensor, 8 tensors)",
       MedianMs([&] { kc::MultiTensorAdamWUpdate(adam.data(), kTensors, ao, step++); }, reps),
       28 * elems, 0});
  const cohort::kernels::SgdOptions so{0.01f, 0.9f, 0.0f, false};
  rows.push_back(
      {"sgd momentum (multi-tensor)",
       MedianMs([&] { kc::MultiTensorSgdMomentumUpdate(sgd.data(), kTensors, so, false); }, reps),
       20 * elems, 0});
  rows.push_back(
      {"cast fp32->bf16",
       MedianMs([&] { kc::CastFromFloat(p, DType::kBF16, half, static_cast<int64_t>(n), 1.0f); },
                reps),
       6.0 * n, 0});
  rows.push_back(
      {"cast bf16->fp32",
       MedianMs([&] { kc::CastToFloat(DType::kBF16, half, flat, static_cast<int64_t>(n), 1.0f); },
                reps),
       6.0 * n, 0});
  rows.push_back(
      {"cast fp32->fp16",
       MedianMs([&] { kc::CastFromFloat(p, DType::kF16, half, static_cast<int64_t>(n), 1.0f); },
                reps),
       6.0 * n, 0});
  rows.push_back({"pack (8 tensors)",
                  MedianMs([&] { kc::Pack(srcs.data(), counts.data(), kTensors, flat); }, reps),
                  8 * elems, 0});
  rows.push_back({"unpack (8 tensors)",
                  MedianMs([&] { kc::Unpack(flat, dsts.data(), counts.data(), kTensors); }, reps),
                  8 * elems, 0});
  rows.push_back(
      {"scale + inf/nan check",
       MedianMs([&] { kc::ScaleCheckFinite(g, static_cast<int64_t>(n), 1.0f, flag); }, reps),
       8.0 * n, 0});
  *copy_ms_out = copy_ms;
  return rows;
}

// GEMM TFLOP/s at 4096^3: fp32 (strict, no TF32), bf16 in with fp32 out, bf16 in and out.
void AddGemmRows(std::vector<Row>* rows_out) {
  std::vector<Row>& rows = *rows_out;
  const int64_t d = 4096;
  const double flops = 2.0 * d * d * d;
  float *ga = Alloc(size_t(d * d), 0.01f), *gb = Alloc(size_t(d * d), 0.02f),
        *gc = Alloc(size_t(d * d), 0.0f);
  void *ha = nullptr, *hb = nullptr, *hc = nullptr;
  BENCH_CUDA(cudaMalloc(&ha, d * d * 2));
  BENCH_CUDA(cudaMalloc(&hb, d * d * 2));
  BENCH_CUDA(cudaMalloc(&hc, d * d * 2));
  kc::CastFromFloat(ga, DType::kBF16, ha, d * d, 1.0f);
  kc::CastFromFloat(gb, DType::kBF16, hb, d * d, 1.0f);
  rows.push_back({"gemm fp32 4096^3",
                  MedianMs([&] { kc::Gemm(false, true, d, d, d, 1, ga, d, gb, d, 0, gc, d); }, 10),
                  0, flops});
  rows.push_back({"gemm bf16->fp32 4096^3",
                  MedianMs(
                      [&] {
                        kc::GemmMixed(false, true, d, d, d, 1, DType::kBF16, ha, d, hb, d, 0,
                                      DType::kF32, gc, d);
                      },
                      20),
                  0, flops});
  rows.push_back({"gemm bf16->bf16 4096^3",
                  MedianMs(
                      [&] {
                        kc::GemmMixed(false, true, d, d, d, 1, DType::kBF16, ha, d, hb, d, 0,
                                      DType::kBF16, hc, d);
                      },
                      20),
                  0, flops});
}

void PrintTable(const char* device, size_t n, const std::vector<Row>& rows, double copy_gbs) {
  std::printf(
      "\nGPU kernels on %s (%zu Mi elements per buffer; GB/s = bytes read + written / time)\n",
      device, n >> 20);
  std::printf("%-34s %10s %10s %12s\n", "kernel", "time ms", "GB/s", "vs copy");
  for (const Row& r : rows) {
    if (r.flops > 0) {
      std::printf("%-34s %10.3f %10s %9.1f TFLOP/s\n", r.name.c_str(), r.ms, "-",
                  r.flops / r.ms / 1e9);
    } else {
      const double gbs = r.bytes / r.ms / 1e6;
      std::printf("%-34s %10.3f %10.1f %11.0f%%\n", r.name.c_str(), r.ms, gbs,
                  100 * gbs / copy_gbs);
    }
  }
}

// False (after perror) when the file cannot be written.
bool WriteJson(const std::string& json_path, const char* device, size_t n,
               const std::vector<Row>& rows, double copy_gbs) {
  FILE* f = std::fopen(json_path.c_str(), "w");
  if (f == nullptr) {
    std::perror(json_path.c_str());
    return false;
  }
  std::fprintf(f, "{\"device\": \"%s\", \"elements\": %zu, \"copy_GBps\": %.1f, \"kernels\": [",
               device, n, copy_gbs);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f, "%s\n  {\"name\": \"%s\", \"ms\": %.4f", i ? "," : "", r.name.c_str(), r.ms);
    if (r.flops > 0) {
      std::fprintf(f, ", \"TFLOPs\": %.2f}", r.flops / r.ms / 1e9);
    } else {
      const double gbs = r.bytes / r.ms / 1e6;
      std::fprintf(f, ", \"GBps\": %.1f, \"fraction_of_copy\": %.3f}", gbs, gbs / copy_gbs);
    }
  }
  std::fprintf(f, "]}\n");
  std::fclose(f);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  size_t n = size_t{64} << 20;  // 64 Mi floats = 256 MiB per buffer
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--elements") && i + 1 < argc)
      n = std::stoull(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--json PATH] [--elements N]\n", argv[0]);
      return 1;
    }
  }
  cohort::bench::RequireDevice("gpu_kernel_bench");
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));

  double copy_ms = 0;
  std::vector<Row> rows = MemoryBoundRows(n, &copy_ms);
  AddGemmRows(&rows);
  BENCH_CUDA(cudaDeviceSynchronize());
  const cohort::Status st = kc::LastError();
  if (!st.ok()) {
    std::fprintf(stderr, "gpu_kernel_bench: %s\n", st.ToString().c_str());
    return 2;
  }

  const double copy_gbs = 2 * static_cast<double>(n) * 4 / copy_ms / 1e6;
  PrintTable(prop.name, n, rows, copy_gbs);
  if (!json_path.empty() && !WriteJson(json_path, prop.name, n, rows, copy_gbs)) return 1;
  return 0;
}
