#include "runtime/run_report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/logging.h"
#include "kernels/cpu/kernels.h"
#include "runtime/device_select.h"
#include "runtime/safetensors.h"

namespace cohort {

std::string ProgressLine(const Config& c, const StepReport& r, int64_t step, int64_t total) {
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "step %6lld/%-6lld loss %8.4f  %9.0f samples/s  %7.2f ms/step  all-reduce %4.1f%%",
                static_cast<long long>(step), static_cast<long long>(total), r.loss,
                r.samples_per_s, r.step_ms, 100.0 * r.allreduce_share);
  return buf + ProgressSuffix(c, r);
}

std::string ProgressSuffix(const Config& c, const StepReport& r) {
  std::string out;
  char buf[64];
  if (c.train.lr_schedule.warmup_steps > 0 || c.train.lr_schedule.decay != LrDecay::kNone) {
    std::snprintf(buf, sizeof(buf), "  lr %.3g", r.lr);
    out += buf;
  }
  if (r.eval_accuracy >= 0) {
    std::snprintf(buf, sizeof(buf), "  test acc %6.2f%% loss %.4f", 100.0 * r.eval_accuracy,
                  r.val_loss);
    out += buf;
  } else if (r.val_loss >= 0) {
    std::snprintf(buf, sizeof(buf), "  val %8.4f", r.val_loss);
    out += buf;
  }
  return out;
}

void AddRunFields(const Config& c, const TrainSummary& s, nlohmann::json* j) {
  (*j)["model"] = DescribeModel(c.model);
  (*j)["lr"] = s.lr;
  if (s.grad_norm >= 0) (*j)["grad_norm"] = s.grad_norm;
  if (c.model.type == ModelType::kGpt) {
    // From the summary's samples/s (an elastic job's spans its epochs).
    const double samples =
        j->contains("samples_per_s") ? (*j)["samples_per_s"].get<double>() : s.samples_per_s;
    (*j)["tokens_per_s"] = samples * static_cast<double>(c.model.gpt.context);
  }
  if (s.evaluations == 0) return;
  const EvalResult& e = s.eval;
  (*j)["eval_ms"] = s.eval_ms;
  if (e.accuracy >= 0) {
    (*j)["eval_loss"] = e.loss;
    (*j)["eval_accuracy"] = e.accuracy;
    (*j)["eval_samples"] = e.samples;
    nlohmann::json rows = nlohmann::json::array();
    for (int32_t t = 0; t < e.classes; ++t) {
      rows.push_back(std::vector<int64_t>(e.confusion.begin() + t * e.classes,
                                          e.confusion.begin() + (t + 1) * e.classes));
    }
    (*j)["eval_confusion"] = rows;
    return;
  }
  (*j)["val_loss"] = e.loss;
  // Bytes are the tokens of a vocabulary of 256: nats per token / ln 2.
  if (c.model.type == ModelType::kGpt && c.model.gpt.vocab == 256)
    (*j)["val_bits_per_byte"] = e.loss / std::log(2.0);
}

Status WriteParams(const std::string& path,
                   const std::vector<std::pair<std::string, Tensor>>& params, const Config& c,
                   int64_t steps, int world) {
  std::vector<NamedTensor> ts;
  for (const auto& [name, t] : params) ts.push_back({name, t});
  // layout 2: linear weights [out, in] (torch.nn.Linear); 1 was the MLP's [in, out].
  return WriteSafetensors(
      path, ts,
      {{"format", c.model.type == ModelType::kGpt ? "cohort.gpt" : "cohort.mlp"},
       {"layout", "2"},
       {"model", DescribeModel(c.model)},
       {"steps", std::to_string(steps)},
       {"world_size", std::to_string(world)}});
}

void LossLog::Record(int64_t step, double loss) {
  if (step == 1 && initial_ < 0) initial_ = loss;
  tail_[step] = loss;
  if (tail_.size() > kTail) tail_.erase(tail_.begin());
}

double LossLog::Final() const {
  double sum = 0;
  int n = 0;
  for (auto it = tail_.rbegin(); it != tail_.rend(); ++it, ++n) sum += it->second;  // newest first
  return n > 0 ? sum / n : 0.0;
}

Result<int> ApplyBlasThreadRule(int requested) {
  int threads = requested;
  if (threads == 0 && std::getenv("OPENBLAS_NUM_THREADS") == nullptr) {
    COHORT_ASSIGN_OR_RETURN(HostLayout layout, HostLayoutFromEnv());
    threads = DefaultBlasThreads(layout, static_cast<int>(std::thread::hardware_concurrency()));
    COHORT_LOG_INFO("BLAS threads {} ({} local ranks from {}, {} CPUs per task)", threads,
                    layout.local_ranks, layout.source, layout.cpus_per_rank);
  }
  if (threads > 0) kernels::SetBlasThreads(threads);
  return threads;
}

}  // namespace cohort
