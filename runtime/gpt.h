#pragma once
// A GPT-2 transformer (model: {type: gpt, vocab, context, layers, heads, width}).
//
// The architecture is GPT-2's, as nanoGPT writes it: token and learned
// position embeddings; `layers` pre-LayerNorm blocks (eps 1e-5), each
//   x = x + attn.c_proj(attention(attn.c_attn(ln_1(x))))
//   x = x + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
// with causal multi-head self-attention behind one fused QKV projection and
// an MLP of 4 x width; a final LayerNorm; logits from the token embedding
// (the head is tied to wte and not stored). Parameters carry nanoGPT's names
// and layouts (each linear weight [out, in], as torch.nn.Linear), so the
// file --save-params writes loads into a nanoGPT-style PyTorch module with
// load_state_dict(strict=True).
//
// Initialisation is GPT-2's: weights and embeddings normal(0, 0.02), the two
// residual output projections (attn.c_proj, mlp.c_proj) normal(0,
// 0.02/sqrt(2 layers)), biases 0, LayerNorm weights 1 and biases 0; each
// value a pure function of (seed, the element's place in the whole model).
//
// Tensor parallelism over T ranks, as Megatron-LM: c_attn is column-parallel
// by heads (each rank holds the q, k and v rows of heads/T heads),
// attn.c_proj row-parallel, mlp.c_fc column-parallel, mlp.c_proj
// row-parallel. Each block's forward all-reduces the two row-parallel outputs
// (before their replicated biases are added) and its backward all-reduces
// the gradients of the two column-parallel inputs. Embeddings, LayerNorms
// and the row-parallel biases are replicated: every rank of the group holds
// and updates the same values. heads and 4 x width must divide by T.
//
// Flat layout (this rank's part): wte, wpe, then per block ln_1.{w,b},
// c_attn.{w,b}, attn.c_proj.{w,b}, ln_2.{w,b}, c_fc.{w,b}, mlp.c_proj.{w,b},
// then ln_f.{w,b}. Gradient groups (LayerRanges): 0 = the embeddings, 1 + l =
// block l, layers + 1 = ln_f; backward finishes them from the last down to 0.
//
// Memory kept for backward, per block, in floats (N = batch x context rows,
// C = width, Ct = C/T, heads/T = Ht): the block's input and its middle
// residual (2 N C), the QKV projection (3 N Ct), the attention
// probabilities (batch x Ht x context^2), the attention output (N Ct), the
// MLP's pre-GELU activations (4 N Ct) and the LayerNorm statistics (4 N).
// The LayerNorm outputs and the GELU output are recomputed in backward
// instead of kept. Besides: the logits (N x vocab, turned into their
// gradient in place) and scratch of 4 N C + 3 N Ct + context^2 floats shared
// by every block.

#include <cstdint>
#include <functional>
#include <vector>

#include "collectives/communicator.h"
#include "core/status.h"
#include "core/tensor.h"
#include "runtime/compute.h"
#include "runtime/config.h"
#include "runtime/model.h"

namespace cohort {

inline constexpr float kGptLayerNormEps = 1e-5f;
inline constexpr float kGptInitStd = 0.02f;

class Gpt final : public Model {
 public:
  // `tp` (nullptr or size 1: no splitting) and `compute` (null: HostCompute())
  // are not owned. The caller validates with CheckTensorParallel first.
  Gpt(const GptConfig& config, Communicator* tp, Compute* compute);
  // The layout of tensor rank `tp_rank` of `tp_size`, for checkpoints.
  static Gpt Layout(const GptConfig& config, int tp_size, int tp_rank);
  // InvalidArgument when `tp_size` does not divide heads and 4 x width.
  static Status CheckTensorParallel(const GptConfig& config, int tp_size);

  int64_t num_params() const override { return num_params_; }
  int64_t full_num_params() const override { return full_num_params_; }
  const std::vector<ParamInfo>& params() const override { return info_; }
  int tp_size() const override { return tp_size_; }
  Compute& compute() const override { return *compute_; }
  SampleShape sample() const override {
    return {DType::kI32, config_.context, config_.context, static_cast<int32_t>(config_.vocab)};
  }
  bool SupportsPrecision(DType) const override { return true; }
  const GptConfig& config() const { return config_; }

  void Init(float* params, uint64_t seed) const override;
  void LocalToFull(const float* local, float* full) const override;
  void FullToLocal(const float* full, float* local) const override;
  std::vector<std::pair<int64_t, int64_t>> LayerRanges() const override;

  // `inputs` are int32 token ids (batch x context) in [0, vocab); targets the
  // next token at each position. precision must be null or fp32.
  Status ForwardBackwardTo(const float* params, const void* inputs, const int32_t* targets,
                           int64_t batch, float* grads, float* loss, StepTimes* times,
                           const std::function<void(int)>* on_layer_grads,
                           const Precision* precision) override;
  Status LossTo(const float* params, const void* inputs, const int32_t* targets, int64_t batch,
                float* loss) override;
  Status LogitsToHost(const float* params, const void* inputs, int64_t batch,
                      float* logits) override;
  Result<std::vector<std::vector<float>>> GatherFull(const float* params) override;

 private:
  Gpt(const GptConfig& config, Communicator* tp, int tp_size, int tp_rank, Compute* compute);

  // One tensor of the model and how this rank holds it. A weight is a
  // [rows, cols] matrix ([out, in]); a 1-D tensor is [rows, 1].
  struct Tensor2 {
    int64_t offset = 0, full_offset = 0;
    int64_t rows = 0, cols = 0;  // the whole tensor
    LayerSplit split = LayerSplit::kReplicated;
    int groups = 1;      // kColumn: row groups split separately (3 for q|k|v)
    float init_std = 0;  // normal(0, init_std); 0: constant `init_value`
    float init_value = 0;
  };
  struct Block {
    int64_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mproj_w, mproj_b;
  };
  int64_t Add(const std::string& name, int64_t rows, int64_t cols, LayerSplit split, int groups,
              float init_std, float init_value, bool is_bias);
  void BuildLayout();
  // Copies between the local and the whole layout of one tensor.
  void MapTensor(const Tensor2& t, const float* from, float* to, bool local_to_full) const;

  // Workspace for `batch` sequences.
  Status Reserve(int64_t batch);
  // Forward through every block and the final LayerNorm + head into logits_.
  Status Forward(const float* params, const int32_t* tokens, int64_t batch, StepTimes* times);
  Status Backward(const float* params, const int32_t* tokens, int64_t batch, float* grads,
                  StepTimes* times, const std::function<void(int)>* on_layer_grads);
  Status TensorAllReduce(float* buf, int64_t n, StepTimes* times);
  // y = x W^T (+ bias when `bias` is set, after the tensor-parallel sum
  // when `reduce`): a linear layer over `rows` rows.
  Status Linear(const float* x, int64_t w, const float* bias, float* y, int64_t rows, int64_t in,
                int64_t out, bool reduce, StepTimes* times);

  // The GEMMs of the linear layers and the head, W at parameter offset `w`
  // ([out, in]): in fp32, or with 16-bit inputs (the activations and output
  // gradients rounded into a16_ / b16_, the weights from params16) and fp32
  // accumulation under mixed precision. y = x W^T; dx = dy W; dW = dy^T x.
  bool mixed() const;
  void MatmulXWt(const float* x, int64_t w, float* y, int64_t rows, int64_t in, int64_t out);
  void MatmulDyW(const float* dy, int64_t w, float* dx, int64_t rows, int64_t in, int64_t out);
  void MatmulDyTX(const float* dy, const float* x, float* dw, int64_t rows, int64_t in,
                  int64_t out);
  Status Reserve16(int64_t batch);

  GptConfig config_;
  const float* p_ = nullptr;         // the parameters of the pass in progress
  const Precision* prec_ = nullptr;  // its precision (null: fp32)
  int64_t reserved16_batch_ = 0;
  Tensor a16_, b16_;  // mixed precision: 16-bit GEMM inputs
  Communicator* tp_;
  int tp_size_ = 1, tp_rank_ = 0;
  Compute* compute_;
  int64_t ct_ = 0, heads_local_ = 0;  // width and heads on this rank
  std::vector<Tensor2> tensors_;      // in params() order
  std::vector<ParamInfo> info_;
  int64_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;  // offsets
  std::vector<Block> blocks_;
  std::vector<int64_t> group_start_;  // LayerRanges' offsets
  int64_t num_params_ = 0, full_num_params_ = 0;

  // Workspace on the compute (see the header comment).
  int64_t reserved_batch_ = 0;
  std::vector<Tensor>
      res_;  // layers + 1 residual streams (N, C): block l's input, then the final one
  std::vector<Tensor> mid_;    // per block: x + attention (N, C)
  std::vector<Tensor> qkv_;    // per block: (N, 3 Ct)
  std::vector<Tensor> att_;    // per block: (batch, Ht, context, context)
  std::vector<Tensor> atty_;   // per block: attention output (N, Ct)
  std::vector<Tensor> fch_;    // per block: c_fc output before GELU (N, 4 Ct)
  std::vector<Tensor> stats_;  // per block: ln_1 mean, rstd, ln_2 mean, rstd (4 N)
  Tensor lnf_stats_;           // ln_f mean, rstd (2 N)
  Tensor logits_;              // (N, vocab); its gradient in backward
  Tensor ln_out_;              // scratch (N, C): a LayerNorm output
  Tensor gelu_;                // scratch (N, 4 Ct): GELU output, then its gradient
  Tensor dres_, dx_;    // scratch (N, C): the residual stream's gradient; a LayerNorm input's
  Tensor dqkv_;         // scratch (N, 3 Ct)
  Tensor datty_;        // scratch (N, Ct)
  Tensor att_scratch_;  // scratch (context^2)
  Tensor loss_;         // one float
};

}  // namespace cohort
