#include "runtime/generate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/transformer.h"
#include "runtime/gpt.h"
#include "runtime/rng.h"

namespace cohort {

Result<GptGenerator> GptGenerator::Create(const GptConfig& config, std::vector<float> params) {
  const Gpt layout = Gpt::Layout(config, 1, 0);
  if (static_cast<int64_t>(params.size()) != layout.full_num_params()) {
    return InvalidArgument("the parameters hold " + std::to_string(params.size()) +
                           " values; the GPT needs " + std::to_string(layout.full_num_params()));
  }
  return GptGenerator(config, std::move(params));
}

GptGenerator::GptGenerator(const GptConfig& config, std::vector<float> params)
    : config_(config), params_(std::move(params)) {
  // Offsets by name, from the one definition of the layout (Gpt).
  std::map<std::string, int64_t> at;
  const Gpt layout = Gpt::Layout(config, 1, 0);
  for (const ParamInfo& p : layout.params()) at[p.name] = p.offset;
  wte_ = at.at("transformer.wte.weight");
  wpe_ = at.at("transformer.wpe.weight");
  lnf_w_ = at.at("transformer.ln_f.weight");
  lnf_b_ = at.at("transformer.ln_f.bias");
  for (int64_t l = 0; l < config.layers; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    blocks_.push_back({at.at(p + "ln_1.weight"), at.at(p + "ln_1.bias"),
                       at.at(p + "attn.c_attn.weight"), at.at(p + "attn.c_attn.bias"),
                       at.at(p + "attn.c_proj.weight"), at.at(p + "attn.c_proj.bias"),
                       at.at(p + "ln_2.weight"), at.at(p + "ln_2.bias"),
                       at.at(p + "mlp.c_fc.weight"), at.at(p + "mlp.c_fc.bias"),
                       at.at(p + "mlp.c_proj.weight"), at.at(p + "mlp.c_proj.bias")});
  }
  const auto C = static_cast<size_t>(config.width), T = static_cast<size_t>(config.context);
  k_cache_.assign(static_cast<size_t>(config.layers) * T * C, 0.0f);
  v_cache_.assign(k_cache_.size(), 0.0f);
  x_.assign(C, 0.0f);
  h_.assign(C, 0.0f);
  qkv_.assign(3 * C, 0.0f);
  att_.assign(T, 0.0f);
  y_.assign(C, 0.0f);
  fc_.assign(4 * C, 0.0f);
  logits_.assign(static_cast<size_t>(config.vocab), 0.0f);
}

const float* GptGenerator::Step(int32_t token, int64_t pos) {
  const int64_t C = config_.width, H = config_.heads, hs = C / H, T = config_.context;
  const float* p = params_.data();
  float stats[2];
  // y = x W^T + b for one row.
  auto linear = [](const float* x, const float* w, const float* b, float* y, int64_t in,
                   int64_t out) {
    kernels::Gemm(false, true, 1, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    kernels::BiasActForward(y, b, y, 1, out, kernels::Activation::kNone);
  };
  for (int64_t c = 0; c < C; ++c) x_[c] = p[wte_ + token * C + c] + p[wpe_ + pos * C + c];
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    float* kc = k_cache_.data() + static_cast<int64_t>(l) * T * C;
    float* vc = v_cache_.data() + static_cast<int64_t>(l) * T * C;
    kernels::LayerNormForward(x_.data(), p + b.ln1_w, p + b.ln1_b, h_.data(), stats, stats + 1, 1,
                              C, kGptLayerNormEps);
    linear(h_.data(), p + b.qkv_w, p + b.qkv_b, qkv_.data(), C, 3 * C);
    std::copy_n(qkv_.data() + C, C, kc + pos * C);
    std::copy_n(qkv_.data() + 2 * C, C, vc + pos * C);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    for (int64_t h = 0; h < H; ++h) {
      const float* q = qkv_.data() + h * hs;
      float mx = -INFINITY;
      for (int64_t t = 0; t <= pos; ++t) {
        float s = 0;
        for (int64_t d = 0; d < hs; ++d) s += q[d] * kc[t * C + h * hs + d];
        att_[t] = s * scale;
        mx = std::max(mx, att_[t]);
      }
      float sum = 0;
      for (int64_t t = 0; t <= pos; ++t) sum += (att_[t] = std::exp(att_[t] - mx));
      float* y = y_.data() + h * hs;
      std::fill_n(y, hs, 0.0f);
      for (int64_t t = 0; t <= pos; ++t) {
        const float a = att_[t] / sum;
        for (int64_t d = 0; d < hs; ++d) y[d] += a * vc[t * C + h * hs + d];
      }
    }
    linear(y_.data(), p + b.proj_w, p + b.proj_b, h_.data(), C, C);
    kernels::ResidualAdd(x_.data(), h_.data(), x_.data(), C);
    kernels::LayerNormForward(x_.data(), p + b.ln2_w, p + b.ln2_b, h_.data(), stats, stats + 1, 1,
                              C, kGptLayerNormEps);
    linear(h_.data(), p + b.fc_w, p + b.fc_b, fc_.data(), C, 4 * C);
    kernels::GeluForward(fc_.data(), fc_.data(), 4 * C);
    linear(fc_.data(), p + b.mproj_w, p + b.mproj_b, h_.data(), 4 * C, C);
    kernels::ResidualAdd(x_.data(), h_.data(), x_.data(), C);
  }
  kernels::LayerNormForward(x_.data(), p + lnf_w_, p + lnf_b_, h_.data(), stats, stats + 1, 1, C,
                            kGptLayerNormEps);
  kernels::Gemm(false, true, 1, config_.vocab, C, 1.0f, h_.data(), C, p + wte_, C, 0.0f,
                logits_.data(), config_.vocab);
  return logits_.data();
}

int32_t GptGenerator::Pick(const float* logits, const GenerateOptions& opt, uint64_t draw) const {
  const int64_t V = config_.vocab;
  if (opt.temperature == 0)
    return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
  // The k largest logits, highest first (ties: the lower id first).
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> w(static_cast<size_t>(k));
  const double top = logits[ids[0]];
  double sum = 0;
  for (int64_t i = 0; i < k; ++i)
    sum += (w[i] = std::exp((logits[ids[i]] - top) / opt.temperature));
  double u = static_cast<double>(draw >> 11) * 0x1.0p-53 * sum;
  for (int64_t i = 0; i < k; ++i) {
    if ((u -= w[i]) < 0) return ids[i];
  }
  return ids[k - 1];
}

Result<std::vector<int32_t>> GptGenerator::Generate(const std::vector<int32_t>& prompt,
                                                    const GenerateOptions& opt) {
  const int64_t T = config_.context;
  if (prompt.empty()) return InvalidArgument("the prompt is empty; give at least one token");
  if (static_cast<int64_t>(prompt.size()) > T) {
    return InvalidArgument("the prompt has " + std::to_string(prompt.size()) +
                           " tokens, more than the model's context " + std::to_string(T));
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= config_.vocab) {
      return InvalidArgument("prompt token " + std::to_string(prompt[i]) + " at position " +
                             std::to_string(i) + " is outside the model's vocabulary of " +
                             std::to_string(config_.vocab));
    }
  }
  if (opt.tokens < 0) return InvalidArgument("--tokens must be >= 0");
  if (!(opt.temperature >= 0) || !std::isfinite(opt.temperature)) {
    return InvalidArgument("--temperature must be a finite number >= 0");
  }
  if (opt.top_k < 0) return InvalidArgument("--top-k must be >= 0 (0: the whole vocabulary)");
  std::vector<int32_t> seq = prompt;
  // Feeds seq[from ..) at positions from the cache's start `base`.
  int64_t base = 0;
  const float* logits = nullptr;
  for (size_t i = 0; i < seq.size(); ++i) logits = Step(seq[i], static_cast<int64_t>(i));
  for (int64_t n = 0; n < opt.tokens; ++n) {
    const int32_t next =
        Pick(logits, opt, HashCombine(opt.seed, 0x67656e, static_cast<uint64_t>(n)));
    seq.push_back(next);
    if (n + 1 == opt.tokens) break;
    int64_t pos = static_cast<int64_t>(seq.size()) - 1 - base;
    if (pos == T) {  // the cache is full: restart it from the last T/2 tokens
      const int64_t keep = std::max<int64_t>(1, T / 2);
      base = static_cast<int64_t>(seq.size()) - keep;
      for (int64_t i = 0; i + 1 < keep; ++i) Step(seq[static_cast<size_t>(base + i)], i);
      pos = keep - 1;
    }
    logits = Step(next, pos);
  }
  return seq;
}

}  // namespace cohort
