#pragma once
// Sampling text from a trained GPT (runtime/gpt.h) on one process, the CPU.
//
// Generation is incremental: each new token runs one position through the
// model, attending to keys and values cached from the earlier positions, so N
// tokens cost O(N) positions of work rather than O(N^2). When the sequence
// reaches the model's context, the cache restarts from the last context/2
// tokens (re-encoded at positions 0 ..), as nanoGPT crops its input to the
// block size.
//
// Memory: the parameters, plus a key and a value cache of layers x context x
// width floats each.

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/config.h"

namespace cohort {

struct GenerateOptions {
  int64_t tokens = 100;      // new tokens to sample
  double temperature = 1.0;  // 0: greedy (argmax; the lowest id wins a tie)
  int64_t top_k = 0;         // 0: the whole vocabulary
  uint64_t seed = 1;
};

class GptGenerator {
 public:
  // `params` is the whole model's flat fp32 layout (a checkpoint's
  // LoadedCheckpoint::params); InvalidArgument when its size does not match.
  static Result<GptGenerator> Create(const GptConfig& config, std::vector<float> params);

  // The prompt followed by opt.tokens sampled tokens. InvalidArgument for an
  // empty prompt, one longer than the context, a token outside the
  // vocabulary, or bad options.
  Result<std::vector<int32_t>> Generate(const std::vector<int32_t>& prompt,
                                        const GenerateOptions& opt);

  // The logits (vocab floats) after feeding `token` at position `pos`; the
  // cache must hold positions [0, pos). Exposed for tests.
  const float* Step(int32_t token, int64_t pos);

 private:
  GptGenerator(const GptConfig& config, std::vector<float> params);
  int32_t Pick(const float* logits, const GenerateOptions& opt, uint64_t draw) const;

  GptConfig config_;
  std::vector<float> params_;
  // Offsets of each tensor in params_ (the layout of Gpt with one rank).
  int64_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
  struct Block {
    int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w, mproj_b;
  };
  std::vector<Block> blocks_;
  std::vector<float> k_cache_, v_cache_;  // [layer][position][width]
  // Scratch for one position.
  std::vector<float> x_, h_, qkv_, att_, y_, fc_, logits_;
};

}  // namespace cohort
