// The Trainer on a device other than the CPU, checked without a GPU.
//
// GuardedCompute is a Compute that says it is a device and keeps its memory
// the way a GPU does: apart from the host. Its allocations are mmap'd pages
// left PROT_NONE except while one of its own calls (a kernel, a copy) or a
// collective of a guarded communicator runs, so host code that reads or
// writes device memory directly (what would crash, or silently read garbage,
// on a GPU) faults here. Every kernel, copy and collective also checks that
// its device pointers lie inside its allocations (a host buffer handed to a
// kernel is the other classic GPU bug), and the gradient sync's ordering is
// checked: a bucket's WaitReady must follow the MarkReady of each of its
// layers.
//
// Underneath it runs the same CPU kernels as HostCompute, so a job on it must
// give bitwise the same parameters, per-step losses, learning rates and
// gradient norms as on the CPU: for the MLP, data parallel with bucketed,
// overlapped all-reduce; ZeRO-1 with fp16 loss scaling; tensor parallel in
// bf16; checkpoint write and resume; CaptureState. For the GPT (on token
// files written here), with clipping and a warm-up + cosine schedule: data
// parallel with bucketed, overlapped all-reduce and validation; ZeRO-1;
// tensor parallel; checkpoint write and resume. Ranks are threads over shm.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/shm/shm_communicator.h"
#include "collectives/store.h"
#include "kernels/cpu/transformer.h"
#include "runtime/checkpoint.h"
#include "runtime/compute.h"
#include "runtime/data/tokens.h"
#include "runtime/trainer.h"

namespace cohort {
namespace {

constexpr auto kOpTimeout = std::chrono::seconds(30);

class GuardedCompute final : public Compute {
 public:
  ~GuardedCompute() override = default;

  Device device() const override { return Device::kCuda; }
  std::string Describe() const override { return "guarded (test device)"; }

  // While a Scope lives, device memory is readable and writable.
  class Scope {
   public:
    explicit Scope(GuardedCompute& c) : c_(c) { c_.Open(); }
    ~Scope() { c_.Close(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GuardedCompute& c_;
  };

  Result<Tensor> Alloc(Shape shape, DType dtype) override {
    const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t mapped = (bytes + page - 1) / page * page + page;
    void* p = mmap(nullptr, mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return Unavailable("mmap failed");
    {
      std::lock_guard<std::mutex> lock(mu_);
      regions_[static_cast<char*>(p)] = mapped;
      if (open_ > 0) mprotect(p, mapped, PROT_READ | PROT_WRITE);
    }
    auto storage = Storage::Wrap(p, bytes, Device::kCuda, [this, p, mapped] {
      std::lock_guard<std::mutex> lock(mu_);
      regions_.erase(static_cast<char*>(p));
      munmap(p, mapped);
    });
    return Tensor::FromStorage(std::move(storage), std::move(shape), dtype);  // mmap zero-fills
  }

  void CopyToDevice(void* dst, const void* src, size_t bytes) override {
    Check("CopyToDevice", dst, bytes);
    Scope s(*this);
    std::memcpy(dst, src, bytes);
  }
  Status CopyToHost(void* dst, const void* src, size_t bytes) override {
    Check("CopyToHost", src, bytes);
    Scope s(*this);
    std::memcpy(dst, src, bytes);
    return Status::Ok();
  }
  void Zero(void* dst, size_t bytes) override {
    Check("Zero", dst, bytes);
    Scope s(*this);
    std::memset(dst, 0, bytes);
  }
  Status Sync() override {
    ++syncs_;
    return Status::Ok();
  }
  void MarkReady(int slot) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++marks_[slot];
  }
  Status WaitReady(int slot) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (++waits_[slot] > marks_[slot]) {
      violations_.push_back("WaitReady(" + std::to_string(slot) + ") before its MarkReady");
    }
    return Status::Ok();
  }

  void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
            int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    Check("Gemm a", a, 4 * static_cast<size_t>(ta ? k * lda : m * lda));
    Check("Gemm b", b, 4 * static_cast<size_t>(tb ? n * ldb : k * ldb));
    Check("Gemm c", c, 4 * static_cast<size_t>(m * ldc));
    Scope s(*this);
    kernels::Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void GemmMixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, DType ab,
                 const void* a, int64_t lda, const void* b, int64_t ldb, float beta, DType ct,
                 void* c, int64_t ldc) override {
    const size_t e = DTypeSize(ab);
    Check("GemmMixed a", a, e * static_cast<size_t>(ta ? k * lda : m * lda));
    Check("GemmMixed b", b, e * static_cast<size_t>(tb ? n * ldb : k * ldb));
    Check("GemmMixed c", c, DTypeSize(ct) * static_cast<size_t>(m * ldc));
    Scope s(*this);
    kernels::GemmMixed(ta, tb, m, n, k, alpha, ab, a, lda, b, ldb, beta, ct, c, ldc);
  }
  void BiasActForward(const float* x, const float* bias, float* y, int64_t rows, int64_t cols,
                      kernels::Activation act) override {
    Check("BiasActForward x", x, F(rows * cols));
    Check("BiasActForward bias", bias, F(cols));
    Check("BiasActForward y", y, F(rows * cols));
    Scope s(*this);
    kernels::BiasActForward(x, bias, y, rows, cols, act);
  }
  void ActForward(const float* z, float* y, int64_t n, kernels::Activation act) override {
    Check("ActForward z", z, F(n));
    Check("ActForward y", y, F(n));
    Scope s(*this);
    kernels::ActForward(z, y, n, act);
  }
  void ActBackward(const float* z_or_y, const float* dy, float* dz, int64_t n,
                   kernels::Activation act) override {
    Check("ActBackward z", z_or_y, F(n));
    Check("ActBackward dy", dy, F(n));
    Check("ActBackward dz", dz, F(n));
    Scope s(*this);
    kernels::ActBackward(z_or_y, dy, dz, n, act);
  }
  void BiasGrad(const float* dz, float* db, int64_t rows, int64_t cols) override {
    Check("BiasGrad dz", dz, F(rows * cols));
    Check("BiasGrad db", db, F(cols));
    Scope s(*this);
    kernels::BiasGrad(dz, db, rows, cols);
  }
  void SoftmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                  int64_t rows, int64_t cols, float* mean_loss) override {
    Check("SoftmaxCrossEntropyForward logits", logits, F(rows * cols));
    Check("SoftmaxCrossEntropyForward labels", labels, F(rows));
    Check("SoftmaxCrossEntropyForward probs", probs, F(rows * cols));
    Check("SoftmaxCrossEntropyForward loss", mean_loss, 4);
    Scope s(*this);
    kernels::SoftmaxCrossEntropyForward(logits, labels, probs, rows, cols, mean_loss);
  }
  void SoftmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                   int64_t rows, int64_t cols, float scale) override {
    Check("SoftmaxCrossEntropyBackward probs", probs, F(rows * cols));
    Check("SoftmaxCrossEntropyBackward labels", labels, F(rows));
    Check("SoftmaxCrossEntropyBackward dlogits", dlogits, F(rows * cols));
    Scope s(*this);
    kernels::SoftmaxCrossEntropyBackward(probs, labels, dlogits, rows, cols, scale);
  }
  void SgdMomentumUpdate(float* param, const float* grad, float* buf, int64_t n,
                         const kernels::SgdOptions& opt, bool first_step) override {
    Check("SgdMomentumUpdate param", param, F(n));
    Check("SgdMomentumUpdate grad", grad, F(n));
    if (buf != nullptr) Check("SgdMomentumUpdate momentum", buf, F(n));
    Scope s(*this);
    kernels::SgdMomentumUpdate(param, grad, buf, n, opt, first_step);
  }
  void AdamWUpdate(float* param, const float* grad, float* m, float* v, int64_t n,
                   const kernels::AdamWOptions& opt, int64_t step) override {
    Check("AdamWUpdate param", param, F(n));
    Check("AdamWUpdate grad", grad, F(n));
    Check("AdamWUpdate m", m, F(n));
    Check("AdamWUpdate v", v, F(n));
    Scope s(*this);
    kernels::AdamWUpdate(param, grad, m, v, n, opt, step);
  }
  void Scale(float* y, int64_t n, float sc) override {
    Check("Scale", y, F(n));
    Scope s(*this);
    kernels::Scale(y, n, sc);
  }
  void ScaleCheckFinite(float* y, int64_t n, float sc, int32_t* found) override {
    Check("ScaleCheckFinite y", y, F(n));
    Check("ScaleCheckFinite found", found, 4);
    Scope s(*this);
    kernels::ScaleCheckFinite(y, n, sc, found);
  }
  void CastFromFloat(const float* in, DType half, void* out, int64_t n, float scale) override {
    Check("CastFromFloat in", in, F(n));
    Check("CastFromFloat out", out, 2 * static_cast<size_t>(n));
    Scope s(*this);
    kernels::CastFromFloat(in, half, out, n, scale);
  }
  void CastToFloat(DType half, const void* in, float* out, int64_t n, float scale) override {
    Check("CastToFloat in", in, 2 * static_cast<size_t>(n));
    Check("CastToFloat out", out, F(n));
    Scope s(*this);
    kernels::CastToFloat(half, in, out, n, scale);
  }

  // The GPT-2 kernels. The embedding tables' extent is not in the
  // signatures: they are checked up to the last row the tokens index.
  void EmbeddingForward(const int32_t* tokens, const float* wte, const float* wpe, float* out,
                        int64_t B, int64_t T, int64_t C) override {
    Check("EmbeddingForward tokens", tokens, F(B * T));
    Check("EmbeddingForward wte", wte, F(TableRows(tokens, B * T) * C));
    Check("EmbeddingForward wpe", wpe, F(T * C));
    Check("EmbeddingForward out", out, F(B * T * C));
    Scope s(*this);
    kernels::EmbeddingForward(tokens, wte, wpe, out, B, T, C);
  }
  void EmbeddingBackward(const float* dout, const int32_t* tokens, float* dwte, float* dwpe,
                         int64_t B, int64_t T, int64_t C) override {
    Check("EmbeddingBackward dout", dout, F(B * T * C));
    Check("EmbeddingBackward tokens", tokens, F(B * T));
    Check("EmbeddingBackward dwte", dwte, F(TableRows(tokens, B * T) * C));
    Check("EmbeddingBackward dwpe", dwpe, F(T * C));
    Scope s(*this);
    kernels::EmbeddingBackward(dout, tokens, dwte, dwpe, B, T, C);
  }
  void LayerNormForward(const float* x, const float* w, const float* b, float* y, float* mean,
                        float* rstd, int64_t rows, int64_t C, float eps) override {
    Check("LayerNormForward x", x, F(rows * C));
    Check("LayerNormForward w", w, F(C));
    Check("LayerNormForward b", b, F(C));
    Check("LayerNormForward y", y, F(rows * C));
    Check("LayerNormForward mean", mean, F(rows));
    Check("LayerNormForward rstd", rstd, F(rows));
    Scope s(*this);
    kernels::LayerNormForward(x, w, b, y, mean, rstd, rows, C, eps);
  }
  void LayerNormBackward(const float* dy, const float* x, const float* w, const float* mean,
                         const float* rstd, float* dx, float* dw, float* db, int64_t rows,
                         int64_t C) override {
    Check("LayerNormBackward dy", dy, F(rows * C));
    Check("LayerNormBackward x", x, F(rows * C));
    Check("LayerNormBackward w", w, F(C));
    Check("LayerNormBackward mean", mean, F(rows));
    Check("LayerNormBackward rstd", rstd, F(rows));
    Check("LayerNormBackward dx", dx, F(rows * C));
    Check("LayerNormBackward dw", dw, F(C));
    Check("LayerNormBackward db", db, F(C));
    Scope s(*this);
    kernels::LayerNormBackward(dy, x, w, mean, rstd, dx, dw, db, rows, C);
  }
  void ResidualAdd(const float* a, const float* b, float* out, int64_t n) override {
    Check("ResidualAdd a", a, F(n));
    Check("ResidualAdd b", b, F(n));
    Check("ResidualAdd out", out, F(n));
    Scope s(*this);
    kernels::ResidualAdd(a, b, out, n);
  }
  void GeluForward(const float* x, float* y, int64_t n) override {
    Check("GeluForward x", x, F(n));
    Check("GeluForward y", y, F(n));
    Scope s(*this);
    kernels::GeluForward(x, y, n);
  }
  void GeluBackward(const float* x, const float* dy, float* dx, int64_t n) override {
    Check("GeluBackward x", x, F(n));
    Check("GeluBackward dy", dy, F(n));
    Check("GeluBackward dx", dx, F(n));
    Scope s(*this);
    kernels::GeluBackward(x, dy, dx, n);
  }
  void AttentionForward(const float* qkv, float* out, float* att, int64_t B, int64_t T, int64_t C,
                        int64_t NH) override {
    Check("AttentionForward qkv", qkv, F(B * T * 3 * C));
    Check("AttentionForward out", out, F(B * T * C));
    Check("AttentionForward att", att, F(B * NH * T * T));
    Scope s(*this);
    kernels::AttentionForward(qkv, out, att, B, T, C, NH);
  }
  void AttentionBackward(const float* dout, const float* qkv, const float* att, float* dqkv,
                         float* scratch, int64_t B, int64_t T, int64_t C, int64_t NH) override {
    Check("AttentionBackward dout", dout, F(B * T * C));
    Check("AttentionBackward qkv", qkv, F(B * T * 3 * C));
    Check("AttentionBackward att", att, F(B * NH * T * T));
    Check("AttentionBackward dqkv", dqkv, F(B * T * 3 * C));
    Check("AttentionBackward scratch", scratch, F(T * T));
    Scope s(*this);
    kernels::AttentionBackward(dout, qkv, att, dqkv, scratch, B, T, C, NH);
  }
  void CrossEntropyFused(const float* logits, const int32_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, float* mean_loss) override {
    Check("CrossEntropyFused logits", logits, F(rows * V));
    Check("CrossEntropyFused targets", targets, F(rows));
    if (dlogits != nullptr) Check("CrossEntropyFused dlogits", dlogits, F(rows * V));
    Check("CrossEntropyFused mean_loss", mean_loss, F(1));
    Scope s(*this);
    kernels::CrossEntropyFused(logits, targets, dlogits, rows, V, grad_scale, mean_loss);
  }
  void SumSquares(const float* x, int64_t n, float* out) override {
    Check("SumSquares x", x, F(n));
    Check("SumSquares out", out, F(1));
    Scope s(*this);
    kernels::SumSquares(x, n, out);
  }

  // Records a violation unless [p, p + bytes) lies in one allocation.
  void Check(const std::string& what, const void* p, size_t bytes) {
    if (!Inside(p, bytes)) {
      std::lock_guard<std::mutex> lock(mu_);
      violations_.push_back(what + ": " + std::to_string(bytes) +
                            " bytes at a pointer outside device memory");
    }
  }
  bool Inside(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    const char* c = static_cast<const char*>(p);
    auto it = regions_.upper_bound(const_cast<char*>(c));
    if (it == regions_.begin()) return false;
    --it;
    return c >= it->first && c + bytes <= it->first + it->second;
  }
  // 1 + the largest of n tokens in device memory (what a kernel reads of an
  // embedding table); 0 when the tokens are not device memory (their own
  // check records that).
  int64_t TableRows(const int32_t* tokens, int64_t n) {
    if (!Inside(tokens, F(n))) return 0;
    Scope s(*this);
    int32_t largest = -1;
    for (int64_t i = 0; i < n; ++i) largest = std::max(largest, tokens[i]);
    return int64_t{largest} + 1;
  }

  std::vector<std::string> violations() {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }
  int64_t marks() {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (const auto& [slot, count] : marks_) n += count;
    return n;
  }

 private:
  static size_t F(int64_t n) { return 4 * static_cast<size_t>(n); }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    if (open_++ == 0) {
      for (const auto& [p, size] : regions_) mprotect(p, size, PROT_READ | PROT_WRITE);
    }
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--open_ == 0) {
      for (const auto& [p, size] : regions_) mprotect(p, size, PROT_NONE);
    }
  }

  std::mutex mu_;
  std::map<char*, size_t> regions_;  // guarded by mu_
  int open_ = 0;                     // guarded by mu_: live Scopes
  std::map<int, int64_t> marks_, waits_;
  std::vector<std::string> violations_;
  std::atomic<int64_t> syncs_{0};
};

// A communicator on device memory (as NCCL is): every buffer must be the
// compute's, and the memory is opened only while the collective runs.
class GuardedComm final : public Communicator {
 public:
  GuardedComm(std::unique_ptr<Communicator> inner, GuardedCompute& c)
      : inner_(std::move(inner)), c_(c) {}
  ~GuardedComm() override { StopAsync(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string_view backend() const override { return "guarded-shm"; }
  Status AllReduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) override {
    Both("AllReduce", send, recv, count * DTypeSize(dtype), count * DTypeSize(dtype));
    GuardedCompute::Scope s(c_);
    return inner_->AllReduce(send, recv, count, dtype, op);
  }
  Status Broadcast(void* buf, size_t count, DType dtype, int root) override {
    c_.Check("Broadcast", buf, count * DTypeSize(dtype));
    GuardedCompute::Scope s(c_);
    return inner_->Broadcast(buf, count, dtype, root);
  }
  Status AllGather(const void* send, void* recv, size_t count, DType dtype) override {
    Both("AllGather", send, recv, count * DTypeSize(dtype),
         count * DTypeSize(dtype) * static_cast<size_t>(size()));
    GuardedCompute::Scope s(c_);
    return inner_->AllGather(send, recv, count, dtype);
  }
  Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                       ReduceOp op) override {
    Both("ReduceScatter", send, recv, count * DTypeSize(dtype) * static_cast<size_t>(size()),
         count * DTypeSize(dtype));
    GuardedCompute::Scope s(c_);
    return inner_->ReduceScatter(send, recv, count, dtype, op);
  }
  Status Barrier() override { return inner_->Barrier(); }
  Status Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                int root) override {
    GuardedCompute::Scope s(c_);
    return inner_->Reduce(send, recv, count, dtype, op, root);
  }
  Status AllToAll(const void* send, void* recv, size_t count, DType dtype) override {
    GuardedCompute::Scope s(c_);
    return inner_->AllToAll(send, recv, count, dtype);
  }
  Status Send(const void* buf, size_t count, DType dtype, int peer) override {
    GuardedCompute::Scope s(c_);
    return inner_->Send(buf, count, dtype, peer);
  }
  Status Recv(void* buf, size_t count, DType dtype, int peer) override {
    GuardedCompute::Scope s(c_);
    return inner_->Recv(buf, count, dtype, peer);
  }
  Result<std::unique_ptr<Communicator>> SplitGroup(int, int) override {
    return FailedPrecondition("not used by this test");
  }

 private:
  void Both(const char* what, const void* send, const void* recv, size_t send_bytes,
            size_t recv_bytes) {
    c_.Check(std::string(what) + " send", send, send_bytes);
    c_.Check(std::string(what) + " recv", recv, recv_bytes);
  }
  std::unique_ptr<Communicator> inner_;
  GuardedCompute& c_;
};

struct RankResult {
  Status status;
  TrainSummary summary;
  std::vector<float> params;
  std::vector<float> captured;  // CaptureState's params and optimizer state (parallel.tensor 1)
  std::vector<std::string> violations;
  int64_t marks = 0;
  // Every step of every Run, in order (StepStats): the global-batch loss, the
  // learning rate, the gradient norm before clipping (-1: none), and the
  // validation losses of the steps that evaluated.
  std::vector<double> losses, lrs, grad_norms, val_losses;
  size_t buckets = 0;  // the gradient sync's buckets (ZeRO 0)
};

// One rank: world (host agreement) over shm; data and tensor groups over
// shm, guarded when `guarded`. Trains `steps`, then `more` after a restore
// of the checkpoint it wrote (when checkpoint.dir is set).
RankResult RunRank(const Config& config, std::shared_ptr<Store> store, int rank, int ranks,
                   bool guarded, int64_t steps, bool resume) {
  RankResult out;
  ShmOptions opt;
  opt.op_timeout = kOpTimeout;
  opt.bootstrap_timeout = kOpTimeout;
  auto fail = [&](const Status& s) {
    out.status = s;
    return out;
  };
  auto world = ShmCommunicator::Create(store, rank, ranks, opt);
  if (!world.ok()) return fail(world.status());
  const int tensor = config.parallel.tensor;
  auto data = (*world)->SplitGroup(rank % tensor, rank);
  if (!data.ok()) return fail(data.status());
  auto tp = (*world)->SplitGroup(rank / tensor, rank);
  if (!tp.ok()) return fail(tp.status());
  GuardedCompute device;
  std::unique_ptr<Communicator> data_comm = std::move(*data), tensor_comm = std::move(*tp);
  if (guarded) {
    data_comm = std::make_unique<GuardedComm>(std::move(data_comm), device);
    tensor_comm = std::make_unique<GuardedComm>(std::move(tensor_comm), device);
  }
  Compute* compute = guarded ? static_cast<Compute*>(&device) : nullptr;
  ParallelGroups groups{world->get(), data_comm.get(), tensor_comm.get()};
  auto observe = [&out](const StepStats& st) {
    out.losses.push_back(st.loss);
    out.lrs.push_back(st.lr);
    out.grad_norms.push_back(st.grad_norm);
    if (st.val_loss >= 0) out.val_losses.push_back(st.val_loss);
  };
  {
    auto trainer = Trainer::Create(config, groups, nullptr, compute);
    if (!trainer.ok()) return fail(trainer.status());
    (*trainer)->set_step_observer(observe);
    auto s = (*trainer)->Run(steps, {});
    if (!s.ok()) return fail(s.status());
    out.summary = *s;
  }
  auto trainer = Trainer::Create(config, groups, nullptr, compute);
  if (!trainer.ok()) return fail(trainer.status());
  (*trainer)->set_step_observer(observe);
  out.buckets = (*trainer)->buckets().size();
  if (resume) {
    auto ck = LoadLatestCheckpoint(config.checkpoint.dir, nullptr);
    if (!ck.ok()) return fail(ck.status());
    Status r = (*trainer)->Restore(*ck);
    if (!r.ok()) return fail(r);
    auto s = (*trainer)->Run(config.train.steps - steps, {});
    if (!s.ok()) return fail(s.status());
    out.summary = *s;
  } else {
    auto s = (*trainer)->Run(config.train.steps, {});
    if (!s.ok()) return fail(s.status());
    out.summary = *s;
  }
  auto full = (*trainer)->FullParams();
  if (!full.ok()) return fail(full.status());
  for (auto& [name, t] : *full)
    out.params.insert(out.params.end(), t.data<float>(), t.data<float>() + t.numel());
  if (tensor == 1) {
    auto ck = (*trainer)->CaptureState();
    if (!ck.ok()) return fail(ck.status());
    out.captured = ck->params;
    for (const auto& [name, v] : ck->optim)
      out.captured.insert(out.captured.end(), v.begin(), v.end());
  }
  out.violations = device.violations();
  out.marks = device.marks();
  return out;
}

std::vector<RankResult> RunJob(const std::string& yaml, int ranks, bool guarded,
                               int64_t first_steps = 0, bool resume = false) {
  auto config = ParseConfig(yaml, "device.yaml");
  EXPECT_TRUE(config.ok()) << config.status().message();
  auto store = std::make_shared<InMemoryStore>();
  std::vector<RankResult> results(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      results[static_cast<size_t>(r)] =
          RunRank(*config, store, r, ranks, guarded, first_steps, resume);
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

void ExpectSameJob(const std::vector<RankResult>& host, const std::vector<RankResult>& dev,
                   bool expect_marks) {
  ASSERT_EQ(host.size(), dev.size());
  for (size_t r = 0; r < host.size(); ++r) {
    ASSERT_TRUE(host[r].status.ok()) << "cpu rank " << r << ": " << host[r].status.ToString();
    ASSERT_TRUE(dev[r].status.ok()) << "device rank " << r << ": " << dev[r].status.ToString();
    EXPECT_TRUE(dev[r].violations.empty())
        << "rank " << r << ": " << dev[r].violations.size()
        << " violations, the first: " << dev[r].violations.front();
    EXPECT_EQ(host[r].params, dev[r].params) << "rank " << r;
    EXPECT_EQ(host[r].captured, dev[r].captured) << "rank " << r;
    EXPECT_EQ(host[r].summary.last_loss, dev[r].summary.last_loss) << "rank " << r;
    EXPECT_EQ(host[r].summary.initial_loss, dev[r].summary.initial_loss) << "rank " << r;
    EXPECT_EQ(host[r].summary.skipped_steps, dev[r].summary.skipped_steps) << "rank " << r;
    EXPECT_EQ(host[r].losses, dev[r].losses) << "rank " << r;
    EXPECT_EQ(host[r].lrs, dev[r].lrs) << "rank " << r;
    EXPECT_EQ(host[r].grad_norms, dev[r].grad_norms) << "rank " << r;
    EXPECT_EQ(host[r].val_losses, dev[r].val_losses) << "rank " << r;
    EXPECT_EQ(host[r].summary.val_loss, dev[r].summary.val_loss) << "rank " << r;
    EXPECT_EQ(host[r].summary.device, "cpu");
    EXPECT_EQ(dev[r].summary.device, "guarded (test device)");
    if (expect_marks) {
      EXPECT_GT(dev[r].marks, 0) << "rank " << r << ": the gradient sync never marked the compute";
    }
  }
  EXPECT_FALSE(host[0].params.empty());
}

TEST(TrainerOnDevice, DataParallelBucketedOverlapMatchesTheCpuBitwise) {
  const std::string yaml = R"(seed: 5
model: {layers: [24, 32, 32, 6], activation: gelu}
optimizer: {type: adamw, lr: 0.01}
train: {steps: 6, global_batch: 16, bucket_mb: 0.002, first_bucket_mb: 0.001, overlap: true}
data: {source: synthetic, samples: 128, teacher_hidden: 8}
)";
  ExpectSameJob(RunJob(yaml, 2, false), RunJob(yaml, 2, true), /*expect_marks=*/true);
}

TEST(TrainerOnDevice, ZeroOneWithFp16LossScalingMatchesTheCpuBitwise) {
  // Starting at 2^30 the first steps overflow and are skipped: the overflow
  // flag comes back from device memory.
  const std::string yaml = R"(seed: 9
model: {layers: [16, 24, 4], activation: relu}
optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
train: {steps: 8, global_batch: 16, precision: fp16, loss_scale: {initial: 1073741824, growth_interval: 3}}
data: {source: synthetic, samples: 128, teacher_hidden: 8}
parallel: {zero: 1}
)";
  const auto host = RunJob(yaml, 2, false);
  ExpectSameJob(host, RunJob(yaml, 2, true), /*expect_marks=*/false);
  ASSERT_TRUE(host[0].status.ok());
  EXPECT_GT(host[0].summary.skipped_steps, 0) << "the test meant to overflow at the start";
}

TEST(TrainerOnDevice, TensorParallelBf16MatchesTheCpuBitwise) {
  const std::string yaml = R"(seed: 3
model: {layers: [16, 32, 32, 4], activation: gelu}
optimizer: {type: adamw, lr: 0.01}
train: {steps: 5, global_batch: 8, precision: bf16}
data: {source: synthetic, samples: 64, teacher_hidden: 8}
parallel: {tensor: 2}
)";
  ExpectSameJob(RunJob(yaml, 2, false), RunJob(yaml, 2, true), /*expect_marks=*/true);
}

TEST(TrainerOnDevice, CheckpointWrittenFromTheDeviceResumesBitwise) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("cohort-device-ckpt-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  const std::string yaml = R"(seed: 4
model: {layers: [16, 24, 4], activation: relu}
optimizer: {type: adamw, lr: 0.01}
train: {steps: 8, global_batch: 16}
data: {source: synthetic, samples: 128, teacher_hidden: 8}
parallel: {zero: 1}
checkpoint: {dir: )" + (dir / "dev").string() +
                           R"(, every: 2}
)";
  const auto uninterrupted = RunJob(yaml, 2, false);
  std::filesystem::remove_all(dir);  // its checkpoints must not be the ones resumed from
  // 5 steps on the device (checkpoints at 2 and 4, and the final one at 5),
  // then a new trainer resumes from step 5 and runs to 8.
  const auto resumed = RunJob(yaml, 2, true, 5, true);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(resumed.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    ASSERT_TRUE(uninterrupted[r].status.ok()) << uninterrupted[r].status.ToString();
    ASSERT_TRUE(resumed[r].status.ok()) << resumed[r].status.ToString();
    EXPECT_TRUE(resumed[r].violations.empty()) << resumed[r].violations.front();
    EXPECT_EQ(resumed[r].summary.start_step, 5);
    EXPECT_EQ(uninterrupted[r].params, resumed[r].params) << "rank " << r;
  }
}

// ---- The GPT on the guarded device ----

// llm.c token files for the GPT jobs (vocab kGptVocab) in a fresh temporary
// directory, removed at the end: a training split and a validation split,
// each token mostly its predecessor + 1 (something to learn), now and then a
// seeded random one.
constexpr int kGptVocab = 64;

class GptTokenDir {
 public:
  explicit GptTokenDir(const std::string& name)
      : dir_(std::filesystem::temp_directory_path() /
             ("cohort-device-" + name + "-" + std::to_string(getpid()))) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Write("t_train_000000.bin", 4096, 1);
    Write("t_val_000000.bin", 1024, 2);
  }
  ~GptTokenDir() { std::filesystem::remove_all(dir_); }
  GptTokenDir(const GptTokenDir&) = delete;
  GptTokenDir& operator=(const GptTokenDir&) = delete;

  std::string path() const { return dir_.string(); }

 private:
  void Write(const std::string& name, size_t n, uint64_t seed) {
    std::vector<uint16_t> tokens(n);
    uint64_t x = seed;
    uint16_t prev = 0;
    for (uint16_t& t : tokens) {
      // An LCG: the same stream on every platform.
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      t = (x >> 61) == 0 ? static_cast<uint16_t>((x >> 33) % kGptVocab)
                         : static_cast<uint16_t>((prev + 1) % kGptVocab);
      prev = t;
    }
    const Status s = WriteTokenFile((dir_ / name).string(), tokens);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::filesystem::path dir_;
};

// A tiny GPT (27 k parameters) with AdamW on the token files in `data`;
// `more` adds the train: section and anything else.
std::string GptYaml(const GptTokenDir& data, const std::string& more) {
  return "seed: 13\n"
         "model: {type: gpt, vocab: " +
         std::to_string(kGptVocab) +
         ", context: 16, layers: 2, heads: 2, width: 32}\n"
         "optimizer: {type: adamw, lr: 0.003, weight_decay: 0.1, beta2: 0.95}\n"
         "data: {source: tokens, path: " +
         data.path() + "}\n" + more;
}

// Warm-up then cosine decay, with clipping low enough to clip every step.
constexpr char kGptSchedule[] =
    "clip_grad_norm: 0.1, lr_schedule: {warmup_steps: 2, decay: cosine, min_lr: 0.0003}";

// Checks that the job clipped and followed the schedule: the norm before
// clipping was computed each step and exceeded the limit, and the learning
// rate rose over the warm-up and fell after it.
void ExpectClippedAndScheduled(const RankResult& r) {
  ASSERT_GE(r.grad_norms.size(), 4u);
  for (double n : r.grad_norms) EXPECT_GT(n, 0.1) << "the test meant to clip every step";
  EXPECT_LT(r.lrs[0], r.lrs[1]);
  EXPECT_GT(r.lrs[2], r.lrs.back());
}

TEST(TrainerOnDevice, GptDataParallelBucketedOverlapMatchesTheCpuBitwise) {
  GptTokenDir data("gpt-dp");
  const std::string yaml =
      GptYaml(data, std::string("train: {steps: 6, global_batch: 4, bucket_mb: 0.02, "
                                "first_bucket_mb: 0.005, overlap: true, ") +
                        kGptSchedule + ", eval_every: 3, eval_batches: 2}\n");
  const auto host = RunJob(yaml, 2, false);
  ExpectSameJob(host, RunJob(yaml, 2, true), /*expect_marks=*/true);
  ASSERT_TRUE(host[0].status.ok());
  EXPECT_GE(host[0].buckets, 3u) << "the test meant to sync in several buckets";
  EXPECT_EQ(host[0].val_losses.size(), 2u) << "evaluations after steps 3 and 6";
  EXPECT_EQ(host[0].losses.size(), 6u);
  ExpectClippedAndScheduled(host[0]);
}

TEST(TrainerOnDevice, GptZeroOneMatchesTheCpuBitwise) {
  GptTokenDir data("gpt-zero");
  const std::string yaml = GptYaml(data, std::string("train: {steps: 6, global_batch: 4, ") +
                                             kGptSchedule + "}\nparallel: {zero: 1}\n");
  const auto host = RunJob(yaml, 2, false);
  ExpectSameJob(host, RunJob(yaml, 2, true), /*expect_marks=*/false);
  ASSERT_TRUE(host[0].status.ok());
  EXPECT_FALSE(host[0].captured.empty());
  ExpectClippedAndScheduled(host[0]);
}

TEST(TrainerOnDevice, GptTensorParallelMatchesTheCpuBitwise) {
  GptTokenDir data("gpt-tp");
  const std::string yaml = GptYaml(data, std::string("train: {steps: 5, global_batch: 4, ") +
                                             kGptSchedule + "}\nparallel: {tensor: 2}\n");
  const auto host = RunJob(yaml, 2, false);
  ExpectSameJob(host, RunJob(yaml, 2, true), /*expect_marks=*/true);
  ASSERT_TRUE(host[0].status.ok());
  ExpectClippedAndScheduled(host[0]);
}

TEST(TrainerOnDevice, GptCheckpointWrittenFromTheDeviceResumesBitwise) {
  GptTokenDir data("gpt-resume-tokens");
  const auto dir = std::filesystem::temp_directory_path() /
                   ("cohort-device-gpt-ckpt-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  const std::string yaml =
      GptYaml(data, std::string("train: {steps: 8, global_batch: 4, ") + kGptSchedule +
                        "}\ncheckpoint: {dir: " + (dir / "dev").string() + ", every: 2}\n");
  const auto uninterrupted = RunJob(yaml, 2, false);
  std::filesystem::remove_all(dir);  // its checkpoints must not be the ones resumed from
  // 5 steps on the device (checkpoints at 2 and 4, and the final one at 5),
  // then a new trainer resumes from step 5 and runs to 8.
  const auto resumed = RunJob(yaml, 2, true, 5, true);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(resumed.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    ASSERT_TRUE(uninterrupted[r].status.ok()) << uninterrupted[r].status.ToString();
    ASSERT_TRUE(resumed[r].status.ok()) << resumed[r].status.ToString();
    EXPECT_TRUE(resumed[r].violations.empty()) << resumed[r].violations.front();
    EXPECT_EQ(resumed[r].summary.start_step, 5);
    EXPECT_EQ(uninterrupted[r].params, resumed[r].params) << "rank " << r;
    EXPECT_EQ(uninterrupted[r].captured, resumed[r].captured) << "rank " << r;
    // Steps 1-5 before the checkpoint and 6-8 after it, as uninterrupted.
    EXPECT_EQ(uninterrupted[r].losses, resumed[r].losses) << "rank " << r;
    EXPECT_EQ(uninterrupted[r].lrs, resumed[r].lrs) << "rank " << r;
    EXPECT_EQ(uninterrupted[r].grad_norms, resumed[r].grad_norms) << "rank " << r;
  }
  ASSERT_TRUE(uninterrupted[0].status.ok());
  EXPECT_EQ(uninterrupted[0].losses.size(), 8u);
  ExpectClippedAndScheduled(uninterrupted[0]);
}

// The GPT-2 kernels in the order of a tiny model step, on buffers from `c`;
// returns every float buffer afterwards, by name.
std::map<std::string, std::vector<float>> RunGptKernels(Compute& c) {
  const int64_t B = 2, T = 5, C = 12, NH = 3, V = 7, rows = B * T;
  std::map<std::string, Tensor> bufs;
  // A buffer of n floats, filled with a fixed pattern scaled by `scale`.
  auto Buf = [&](const std::string& name, int64_t n, float scale) {
    auto t = c.Alloc({n}, DType::kF32);
    EXPECT_TRUE(t.ok());
    std::vector<float> h(static_cast<size_t>(n));
    for (size_t i = 0; i < h.size(); ++i)
      h[i] = scale * (0.37f * static_cast<float>((i * 7919 + name.size()) % 23) - 4.0f);
    c.CopyToDevice(t->data<float>(), h.data(), h.size() * sizeof(float));
    bufs[name] = *t;
    return t->data<float>();
  };
  const std::vector<int32_t> host_tokens = {0, 6, 3, 3, 1, 6, 2, 5, 0, 4};
  auto tok = c.Alloc({rows}, DType::kI32);
  EXPECT_TRUE(tok.ok());
  c.CopyToDevice(tok->data<int32_t>(), host_tokens.data(), host_tokens.size() * sizeof(int32_t));
  const int32_t* tokens = tok->data<int32_t>();
  float *wte = Buf("wte", V * C, 0.1f), *wpe = Buf("wpe", T * C, 0.1f),
        *x = Buf("x", rows * C, 0.0f), *w = Buf("w", C, 0.3f), *b = Buf("b", C, 0.1f),
        *y = Buf("y", rows * C, 0.0f), *mean = Buf("mean", rows, 0.0f),
        *rstd = Buf("rstd", rows, 0.0f), *dx = Buf("dx", rows * C, 0.01f),
        *dw = Buf("dw", C, 0.01f), *db = Buf("db", C, 0.01f), *h = Buf("h", rows * C, 0.0f),
        *qkv = Buf("qkv", rows * 3 * C, 0.1f), *att = Buf("att", B * NH * T * T, 0.0f),
        *dqkv = Buf("dqkv", rows * 3 * C, 0.0f), *scratch = Buf("scratch", T * T, 0.0f),
        *logits = Buf("logits", rows * V, 0.0f), *loss = Buf("loss", 1, 0.0f),
        *sumsq = Buf("sumsq", 1, 0.0f);
  const int64_t n = rows * C;
  c.EmbeddingForward(tokens, wte, wpe, x, B, T, C);
  c.LayerNormForward(x, w, b, y, mean, rstd, rows, C, 1e-5f);
  c.GeluForward(y, h, n);
  c.ResidualAdd(x, h, h, n);
  c.AttentionForward(qkv, y, att, B, T, C, NH);
  c.Gemm(false, true, rows, V, C, 1.0f, y, C, wte, C, 0.0f, logits, V);
  c.CrossEntropyFused(logits, tokens, nullptr, rows, V, 1.0f, loss);
  c.CrossEntropyFused(logits, tokens, logits, rows, V, 1.0f / static_cast<float>(rows), loss);
  c.Gemm(false, false, rows, C, V, 1.0f, logits, V, wte, C, 0.0f, h, C);
  c.AttentionBackward(h, qkv, att, dqkv, scratch, B, T, C, NH);
  c.GeluBackward(y, h, h, n);
  c.LayerNormBackward(h, x, w, mean, rstd, dx, dw, db, rows, C);
  c.EmbeddingBackward(dx, tokens, wte, wpe, B, T, C);
  c.SumSquares(dqkv, rows * 3 * C, sumsq);
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, t] : bufs) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    EXPECT_TRUE(c.CopyToHost(v.data(), t.data<float>(), t.nbytes()).ok());
    out[name] = std::move(v);
  }
  return out;
}

// The GPT-2 kernels through the guard: each opens device memory for its call
// and checks every pointer against the extent its shapes imply (no false
// alarms here), and gives bitwise what HostCompute gives; a host buffer
// handed to one is caught.
TEST(TrainerOnDevice, GptKernelsRunInsideTheGuardAsOnTheHost) {
  const auto host = RunGptKernels(HostCompute());
  GuardedCompute dev;
  const auto on_dev = RunGptKernels(dev);
  EXPECT_TRUE(dev.violations().empty())
      << dev.violations().size() << " violations, the first: " << dev.violations().front();
  ASSERT_EQ(host.size(), on_dev.size());
  for (const auto& [name, v] : host) EXPECT_EQ(v, on_dev.at(name)) << name;
  EXPECT_GT(host.at("sumsq")[0], 0.0f);

  auto t = dev.Alloc({4 * 3 * 8}, DType::kF32);
  ASSERT_TRUE(t.ok());
  std::vector<float> host_qkv(4 * 3 * 8);
  dev.AttentionForward(host_qkv.data(), t->data<float>(), t->data<float>(), 1, 4, 8, 2);
  ASSERT_EQ(dev.violations().size(), 1u);
  EXPECT_NE(dev.violations()[0].find("AttentionForward qkv"), std::string::npos)
      << dev.violations()[0];
}

// The guard itself works: host code touching device memory faults.
TEST(TrainerOnDeviceDeathTest, TheGuardCatchesAHostReadOfDeviceMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  GuardedCompute device;
  auto t = device.Alloc({16}, DType::kF32);
  ASSERT_TRUE(t.ok());
  float v = 0;
  ASSERT_TRUE(device.CopyToHost(&v, t->data<float>(), 4).ok());  // through the compute: fine
  EXPECT_EQ(v, 0.0f);
  EXPECT_DEATH({ v = *t->data<volatile float>(); }, "");
  std::vector<float> host(16);
  device.Gemm(false, false, 4, 4, 4, 1.0f, host.data(), 4, t->data<float>(), 4, 0.0f,
              t->data<float>(), 4);
  ASSERT_EQ(device.violations().size(), 1u);
  EXPECT_NE(device.violations()[0].find("Gemm a"), std::string::npos) << device.violations()[0];
}

}  // namespace
}  // namespace cohort
