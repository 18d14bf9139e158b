// gpt_dump CONFIG OUT.safetensors STEPS
//
// What tests/runtime/gpt_golden.py compares with PyTorch: a GPT config's
// initial parameters (named as --save-params names them), the loss and every
// parameter's gradient on the first batch, and the token batches of the
// first STEPS steps exactly as `cohort train` on one rank draws them
// ("x.S" and "y.S", int32 [batch, context]). One process, the CPU.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/data/tokens.h"
#include "runtime/gpt.h"
#include "runtime/safetensors.h"

namespace {

cohort::Status Dump(const std::string& config_path, const std::string& out, int64_t steps) {
  using namespace cohort;
  COHORT_ASSIGN_OR_RETURN(Config config, LoadConfigFile(config_path));
  if (config.model.type != ModelType::kGpt || config.train.batch_per_rank <= 0) {
    return InvalidArgument(config_path + ": needs model.type gpt and train.batch_per_rank");
  }
  const GptConfig& g = config.model.gpt;
  const int64_t batch = config.train.batch_per_rank, T = g.context;
  Gpt model(g, nullptr, nullptr);
  std::vector<float> params(static_cast<size_t>(model.num_params()));
  model.Init(params.data(), config.seed);
  COHORT_ASSIGN_OR_RETURN(auto data,
                          TokenDataset::Open(config.data.path, TokenSplit::kTrain, g.vocab));
  std::vector<NamedTensor> ts;
  std::vector<std::vector<int32_t>> xs, ys;
  for (int64_t s = 0; s < steps; ++s) {
    Tensor x = Tensor::Zeros({batch, T}, DType::kI32), y = Tensor::Zeros({batch, T}, DType::kI32);
    COHORT_RETURN_IF_ERROR(
        data->Fill(config.seed, s, 0, batch, T, x.data<int32_t>(), y.data<int32_t>()));
    ts.push_back({"x." + std::to_string(s), x});
    ts.push_back({"y." + std::to_string(s), y});
  }
  std::vector<float> grads(params.size());
  Tensor loss = Tensor::Zeros({1});
  const Tensor& x0 = ts[0].tensor;
  const Tensor& y0 = ts[1].tensor;
  COHORT_RETURN_IF_ERROR(model.ForwardBackwardTo(params.data(), x0.raw(), y0.data<int32_t>(), batch,
                                                 grads.data(), loss.data<float>(), nullptr, nullptr,
                                                 nullptr));
  ts.push_back({"loss", loss});
  for (const ParamInfo& p : model.params()) {
    Tensor w = Tensor::Zeros(p.full_shape), dw = Tensor::Zeros(p.full_shape);
    std::copy_n(params.data() + p.offset, w.numel(), w.data<float>());
    std::copy_n(grads.data() + p.offset, dw.numel(), dw.data<float>());
    ts.push_back({p.name, w});
    ts.push_back({"grad." + p.name, dw});
  }
  return WriteSafetensors(out, ts);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: gpt_dump CONFIG OUT.safetensors STEPS\n");
    return 2;
  }
  cohort::Status s = Dump(argv[1], argv[2], std::atoll(argv[3]));
  if (!s.ok()) {
    std::fprintf(stderr, "gpt_dump: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
