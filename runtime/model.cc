#include "runtime/model.h"

#include "runtime/gpt.h"
#include "runtime/mlp.h"

namespace cohort {

Status CheckModel(const ModelConfig& config, int tp_size) {
  if (config.type == ModelType::kGpt) return Gpt::CheckTensorParallel(config.gpt, tp_size);
  return Mlp::CheckTensorParallel(config.layers, tp_size);
}

std::unique_ptr<Model> MakeModel(const ModelConfig& config, Communicator* tp, Compute* compute) {
  if (tp != nullptr && tp->size() <= 1) tp = nullptr;
  if (config.type == ModelType::kGpt) return std::make_unique<Gpt>(config.gpt, tp, compute);
  return std::make_unique<Mlp>(config.layers, config.activation, tp, compute);
}

std::unique_ptr<Model> MakeModelLayout(const ModelConfig& config, int tp_size, int tp_rank) {
  if (config.type == ModelType::kGpt)
    return std::make_unique<Gpt>(Gpt::Layout(config.gpt, tp_size, tp_rank));
  return std::make_unique<Mlp>(Mlp::Layout(config.layers, tp_size, tp_rank));
}

}  // namespace cohort
