// params_diff A.safetensors B.safetensors RTOL
// Exits 0 when both files hold the same tensor names and shapes and, for each
// tensor, max|a - b| <= RTOL * max|b|. Prints the worst tensor either way.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "runtime/safetensors.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: params_diff A.safetensors B.safetensors RTOL\n");
    return 2;
  }
  auto a = cohort::ReadSafetensors(argv[1]);
  auto b = cohort::ReadSafetensors(argv[2]);
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "params_diff: %s\n",
                 (!a.ok() ? a.status() : b.status()).ToString().c_str());
    return 2;
  }
  const double rtol = std::atof(argv[3]);
  if (a->tensors.size() != b->tensors.size()) {
    std::fprintf(stderr, "params_diff: %zu vs %zu tensors\n", a->tensors.size(), b->tensors.size());
    return 1;
  }
  double worst = 0;
  std::string worst_name;
  for (const auto& nt : a->tensors) {
    const cohort::Tensor* other = b->Find(nt.name);
    if (other == nullptr || other->shape() != nt.tensor.shape() ||
        nt.tensor.dtype() != cohort::DType::kF32) {
      std::fprintf(stderr, "params_diff: tensor %s missing or shaped differently\n",
                   nt.name.c_str());
      return 1;
    }
    double max_diff = 0, max_ref = 0;
    const float* x = nt.tensor.data<float>();
    const float* y = other->data<float>();
    for (int64_t i = 0; i < nt.tensor.numel(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(x[i] - y[i])));
      max_ref = std::max(max_ref, static_cast<double>(std::abs(y[i])));
    }
    const double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
    if (rel >= worst) {
      worst = rel;
      worst_name = nt.name;
    }
  }
  std::printf("params_diff: worst relative difference %.3g in %s (tolerance %.3g)\n", worst,
              worst_name.c_str(), rtol);
  return worst <= rtol ? 0 : 1;
}
