#include "runtime/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <numbers>
#include <set>
#include <sstream>

#include "core/crc32c.h"
#include "core/file_util.h"
#include "runtime/rng.h"

namespace cohort {
namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Walks one YAML mapping, refusing keys it was not told about.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, const std::string& origin)
      : node_(node), path_(std::move(path)), origin_(origin) {}

  Status Init(const std::vector<std::string>& allowed) {
    if (!node_.IsMap()) return Error(node_, "must be a mapping of keys to values");
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string best;
      size_t best_d = 3;  // suggest only close matches
      for (const auto& a : allowed) {
        const size_t d = EditDistance(key, a);
        if (d < best_d) {
          best_d = d;
          best = a;
        }
      }
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      std::string msg = "unknown key '" + Join(key) + "'";
      msg += best.empty() ? " (valid keys here: " + list + ")"
                          : " (did you mean '" + Join(best) + "'?)";
      return Error(kv.first, msg);
    }
    return Status::Ok();
  }

  bool Has(const std::string& key) const { return static_cast<bool>(node_[key]); }
  const std::string& origin() const { return origin_; }
  YAML::Node Get(const std::string& key) const { return node_[key]; }
  std::string Join(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  template <typename T>
  Status Read(const std::string& key, T* out, bool required = false) {
    YAML::Node v = node_[key];
    if (!v) {
      if (required) return Error(node_, "missing required key '" + Join(key) + "'");
      return Status::Ok();
    }
    if (!v.IsScalar()) return Error(v, "key '" + Join(key) + "' must be a single value");
    try {
      *out = v.as<T>();
    } catch (const YAML::Exception&) {
      return Error(
          v, "key '" + Join(key) + "' must be " + TypeName<T>() + ", not '" + v.Scalar() + "'");
    }
    return Status::Ok();
  }

  Status Error(const YAML::Node& at, const std::string& what) const {
    const YAML::Mark m = at.Mark();
    std::string where = origin_;
    if (m.line >= 0) where += ":" + std::to_string(m.line + 1);
    return InvalidArgument("config " + where + ": " + what);
  }

 private:
  template <typename T>
  static std::string TypeName() {
    if constexpr (std::is_same_v<T, bool>)
      return "true or false";
    else if constexpr (std::is_integral_v<T>)
      return "an integer";
    else if constexpr (std::is_floating_point_v<T>)
      return "a number";
    else
      return "a string";
  }

  YAML::Node node_;
  std::string path_;
  const std::string& origin_;
};

Status Positive(Section& s, const std::string& key, double v) {
  if (!(v > 0)) return s.Error(s.Get(key), "key '" + s.Join(key) + "' must be positive");
  return Status::Ok();
}

Status ParseGpt(Section& s, GptConfig* g) {
  COHORT_RETURN_IF_ERROR(s.Init({"type", "vocab", "context", "layers", "heads", "width"}));
  struct Key {
    const char* name;
    int64_t* value;
    int64_t max;
  };
  for (const Key& k : {Key{"vocab", &g->vocab, int64_t{1} << 20},
                       Key{"context", &g->context, 65536}, Key{"layers", &g->layers, 1024},
                       Key{"heads", &g->heads, 1024}, Key{"width", &g->width, 65536}}) {
    COHORT_RETURN_IF_ERROR(s.Read(k.name, k.value, /*required=*/true));
    if (*k.value < 1 || *k.value > k.max) {
      return s.Error(s.Get(k.name), "'" + s.Join(k.name) + "' must be in [1, " +
                                        std::to_string(k.max) + "], not " +
                                        std::to_string(*k.value));
    }
  }
  if (g->width % g->heads != 0) {
    return s.Error(s.Get("heads"), "'model.heads' " + std::to_string(g->heads) +
                                       " must divide 'model.width' " + std::to_string(g->width));
  }
  return Status::Ok();
}

Status ParseModel(Section& s, ModelConfig* m) {
  std::string type = "mlp";
  COHORT_RETURN_IF_ERROR(s.Read("type", &type));
  if (type == "gpt") {
    m->type = ModelType::kGpt;
    return ParseGpt(s, &m->gpt);
  }
  if (type != "mlp")
    return s.Error(s.Get("type"), "'model.type' must be mlp or gpt, not '" + type + "'");
  COHORT_RETURN_IF_ERROR(s.Init({"type", "layers", "activation"}));
  YAML::Node layers = s.Get("layers");
  if (!layers) return s.Error(s.Get("layers"), "missing required key 'model.layers'");
  if (!layers.IsSequence() || layers.size() < 2) {
    return s.Error(layers,
                   "'model.layers' must be a list of at least two sizes "
                   "(input, ..., classes), e.g. [784, 1024, 10]");
  }
  m->layers.clear();
  for (const auto& l : layers) {
    int64_t v = 0;
    try {
      v = l.as<int64_t>();
    } catch (const YAML::Exception&) {
      return s.Error(l, "'model.layers' entries must be integers, not '" + l.Scalar() + "'");
    }
    if (v <= 0 || v > (int64_t{1} << 20)) {
      return s.Error(l, "'model.layers' entries must be in [1, 1048576], not " + std::to_string(v));
    }
    m->layers.push_back(v);
  }
  std::string act = "relu";
  COHORT_RETURN_IF_ERROR(s.Read("activation", &act));
  if (act == "relu")
    m->activation = kernels::Activation::kRelu;
  else if (act == "gelu")
    m->activation = kernels::Activation::kGelu;
  else
    return s.Error(s.Get("activation"),
                   "'model.activation' must be relu or gelu, not '" + act + "'");
  return Status::Ok();
}

Status ParseOptimizer(Section& s, OptimizerConfig* o) {
  COHORT_RETURN_IF_ERROR(
      s.Init({"type", "lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps"}));
  std::string type = "sgd";
  COHORT_RETURN_IF_ERROR(s.Read("type", &type));
  if (type == "sgd")
    o->type = OptimizerType::kSgd;
  else if (type == "adamw")
    o->type = OptimizerType::kAdamW;
  else
    return s.Error(s.Get("type"), "'optimizer.type' must be sgd or adamw, not '" + type + "'");
  if (o->type == OptimizerType::kAdamW) {
    o->weight_decay = 0.01f;
    o->lr = 1e-3f;
  }
  COHORT_RETURN_IF_ERROR(s.Read("lr", &o->lr, /*required=*/true));
  COHORT_RETURN_IF_ERROR(Positive(s, "lr", o->lr));
  const bool sgd = o->type == OptimizerType::kSgd;
  for (const char* k : {"momentum", "nesterov"}) {
    if (!sgd && s.Has(k))
      return s.Error(s.Get(k), std::string("'optimizer.") + k + "' applies to sgd only");
  }
  for (const char* k : {"beta1", "beta2", "eps"}) {
    if (sgd && s.Has(k))
      return s.Error(s.Get(k), std::string("'optimizer.") + k + "' applies to adamw only");
  }
  COHORT_RETURN_IF_ERROR(s.Read("momentum", &o->momentum));
  COHORT_RETURN_IF_ERROR(s.Read("nesterov", &o->nesterov));
  COHORT_RETURN_IF_ERROR(s.Read("weight_decay", &o->weight_decay));
  COHORT_RETURN_IF_ERROR(s.Read("beta1", &o->beta1));
  COHORT_RETURN_IF_ERROR(s.Read("beta2", &o->beta2));
  COHORT_RETURN_IF_ERROR(s.Read("eps", &o->eps));
  if (o->momentum < 0 || o->momentum >= 1)
    return s.Error(s.Get("momentum"), "'optimizer.momentum' must be in [0, 1)");
  if (o->weight_decay < 0)
    return s.Error(s.Get("weight_decay"), "'optimizer.weight_decay' must be >= 0");
  if (o->beta1 < 0 || o->beta1 >= 1)
    return s.Error(s.Get("beta1"), "'optimizer.beta1' must be in [0, 1)");
  if (o->beta2 < 0 || o->beta2 >= 1)
    return s.Error(s.Get("beta2"), "'optimizer.beta2' must be in [0, 1)");
  if (!(o->eps > 0)) return s.Error(s.Get("eps"), "'optimizer.eps' must be positive");
  return Status::Ok();
}

Status ParseLossScale(Section& s, LossScaleConfig* l) {
  COHORT_RETURN_IF_ERROR(s.Init({"initial", "growth", "backoff", "growth_interval"}));
  COHORT_RETURN_IF_ERROR(s.Read("initial", &l->initial));
  COHORT_RETURN_IF_ERROR(s.Read("growth", &l->growth));
  COHORT_RETURN_IF_ERROR(s.Read("backoff", &l->backoff));
  COHORT_RETURN_IF_ERROR(s.Read("growth_interval", &l->growth_interval));
  auto range = [](double v) {
    std::ostringstream os;
    os.precision(12);  // 2^32 in full
    os << v;
    return os.str();
  };
  if (!(l->initial >= kMinLossScale && l->initial <= kMaxLossScale)) {
    return s.Error(s.Get("initial"), "'" + s.Join("initial") + "' must be in [" +
                                         range(kMinLossScale) + ", " + range(kMaxLossScale) + "]");
  }
  if (!(l->growth > 1 && l->growth <= kMaxLossScaleGrowth)) {
    return s.Error(s.Get("growth"),
                   "'" + s.Join("growth") + "' must be in (1, " + range(kMaxLossScaleGrowth) + "]");
  }
  if (!(l->backoff > 0 && l->backoff < 1)) {
    return s.Error(s.Get("backoff"), "'" + s.Join("backoff") + "' must be in (0, 1)");
  }
  if (l->growth_interval < 1 || l->growth_interval > kMaxLossScaleGrowthInterval) {
    return s.Error(s.Get("growth_interval"), "'" + s.Join("growth_interval") + "' must be in [1, " +
                                                 std::to_string(kMaxLossScaleGrowthInterval) + "]");
  }
  return Status::Ok();
}

Status ParseLrSchedule(Section& s, LrSchedule* l) {
  COHORT_RETURN_IF_ERROR(s.Init({"warmup_steps", "decay", "min_lr"}));
  COHORT_RETURN_IF_ERROR(s.Read("warmup_steps", &l->warmup_steps));
  COHORT_RETURN_IF_ERROR(s.Read("min_lr", &l->min_lr));
  std::string decay = "none";
  COHORT_RETURN_IF_ERROR(s.Read("decay", &decay));
  if (decay == "none")
    l->decay = LrDecay::kNone;
  else if (decay == "cosine")
    l->decay = LrDecay::kCosine;
  else if (decay == "linear")
    l->decay = LrDecay::kLinear;
  else
    return s.Error(s.Get("decay"),
                   "'" + s.Join("decay") + "' must be cosine, linear or none, not '" + decay + "'");
  if (l->warmup_steps < 0)
    return s.Error(s.Get("warmup_steps"), "'" + s.Join("warmup_steps") + "' must be >= 0");
  if (!(l->min_lr >= 0)) return s.Error(s.Get("min_lr"), "'" + s.Join("min_lr") + "' must be >= 0");
  return Status::Ok();
}

Status ParseTrain(Section& s, TrainConfig* t) {
  COHORT_RETURN_IF_ERROR(
      s.Init({"steps", "batch_per_rank", "global_batch", "log_every", "bucket_mb",
              "first_bucket_mb", "overlap", "compression", "precision", "loss_scale", "device",
              "lr_schedule", "clip_grad_norm", "eval_every", "eval_batches"}));
  if (s.Has("lr_schedule")) {
    Section ls(s.Get("lr_schedule"), s.Join("lr_schedule"), s.origin());
    COHORT_RETURN_IF_ERROR(ParseLrSchedule(ls, &t->lr_schedule));
  }
  COHORT_RETURN_IF_ERROR(s.Read("clip_grad_norm", &t->clip_grad_norm));
  if (!(t->clip_grad_norm >= 0)) {
    return s.Error(s.Get("clip_grad_norm"), "'train.clip_grad_norm' must be >= 0 (0: no clipping)");
  }
  COHORT_RETURN_IF_ERROR(s.Read("eval_every", &t->eval_every));
  COHORT_RETURN_IF_ERROR(s.Read("eval_batches", &t->eval_batches));
  if (t->eval_every < 0)
    return s.Error(s.Get("eval_every"), "'train.eval_every' must be >= 0 (0: never)");
  if (t->eval_batches < 1 || t->eval_batches > 100000) {
    return s.Error(s.Get("eval_batches"), "'train.eval_batches' must be in [1, 100000]");
  }
  COHORT_RETURN_IF_ERROR(s.Read("device", &t->device));
  if (t->device != "cpu" && t->device != "cuda" && t->device != "auto") {
    return s.Error(s.Get("device"),
                   "'train.device' must be cpu, cuda or auto, not '" + t->device + "'");
  }
  std::string precision = "fp32";
  COHORT_RETURN_IF_ERROR(s.Read("precision", &precision));
  if (precision == "fp32")
    t->precision = DType::kF32;
  else if (precision == "bf16")
    t->precision = DType::kBF16;
  else if (precision == "fp16")
    t->precision = DType::kF16;
  else
    return s.Error(s.Get("precision"),
                   "'train.precision' must be fp32, bf16 or fp16, not '" + precision + "'");
  if (s.Has("loss_scale")) {
    if (t->precision != DType::kF16) {
      return s.Error(s.Get("loss_scale"),
                     "'train.loss_scale' applies to precision: fp16 only (bf16 has fp32's "
                     "exponent range and needs no loss scaling)");
    }
    Section ls(s.Get("loss_scale"), s.Join("loss_scale"), s.origin());
    COHORT_RETURN_IF_ERROR(ParseLossScale(ls, &t->loss_scale));
  }
  std::string compression = "none";
  COHORT_RETURN_IF_ERROR(s.Read("compression", &compression));
  if (compression == "none")
    t->compression = DType::kF32;
  else if (compression == "bf16")
    t->compression = DType::kBF16;
  else if (compression == "fp16")
    t->compression = DType::kF16;
  else
    return s.Error(s.Get("compression"),
                   "'train.compression' must be none, bf16 or fp16, not '" + compression + "'");
  COHORT_RETURN_IF_ERROR(s.Read("bucket_mb", &t->bucket_mb));
  COHORT_RETURN_IF_ERROR(s.Read("first_bucket_mb", &t->first_bucket_mb));
  COHORT_RETURN_IF_ERROR(s.Read("overlap", &t->overlap));
  if (t->bucket_mb < 0 || t->bucket_mb > 4096)
    return s.Error(s.Get("bucket_mb"), "'train.bucket_mb' must be in [0, 4096]");
  if (t->first_bucket_mb < 0 || t->first_bucket_mb > 4096) {
    return s.Error(s.Get("first_bucket_mb"), "'train.first_bucket_mb' must be in [0, 4096]");
  }
  COHORT_RETURN_IF_ERROR(s.Read("steps", &t->steps));
  COHORT_RETURN_IF_ERROR(s.Read("batch_per_rank", &t->batch_per_rank));
  COHORT_RETURN_IF_ERROR(s.Read("global_batch", &t->global_batch));
  COHORT_RETURN_IF_ERROR(s.Read("log_every", &t->log_every));
  if (t->steps <= 0) return s.Error(s.Get("steps"), "'train.steps' must be positive");
  if (s.Has("batch_per_rank") == s.Has("global_batch")) {
    return s.Error(s.Get("batch_per_rank") ? s.Get("batch_per_rank") : YAML::Node(),
                   "set exactly one of 'train.batch_per_rank' and 'train.global_batch'");
  }
  if (s.Has("batch_per_rank") && t->batch_per_rank <= 0) {
    return s.Error(s.Get("batch_per_rank"), "'train.batch_per_rank' must be positive");
  }
  if (s.Has("global_batch") && t->global_batch <= 0) {
    return s.Error(s.Get("global_batch"), "'train.global_batch' must be positive");
  }
  if (t->log_every < 0) return s.Error(s.Get("log_every"), "'train.log_every' must be >= 0");
  return Status::Ok();
}

Status ParseData(Section& s, DataConfig* d) {
  COHORT_RETURN_IF_ERROR(s.Init({"source", "samples", "teacher_hidden", "path", "placement"}));
  std::string src = "synthetic";
  COHORT_RETURN_IF_ERROR(s.Read("source", &src));
  if (src == "synthetic")
    d->source = DataSource::kSynthetic;
  else if (src == "shards")
    d->source = DataSource::kShards;
  else if (src == "tokens")
    d->source = DataSource::kTokens;
  else if (src == "idx")
    d->source = DataSource::kIdx;
  else
    return s.Error(s.Get("source"),
                   "'data.source' must be synthetic, shards, tokens or idx, not '" + src + "'");
  if (d->source == DataSource::kTokens || d->source == DataSource::kIdx) {
    for (const char* k : {"samples", "teacher_hidden", "placement"}) {
      if (s.Has(k))
        return s.Error(s.Get(k), std::string("'data.") + k + "' does not apply to source: " + src);
    }
    return s.Read("path", &d->path, /*required=*/true);
  }
  if (d->source == DataSource::kSynthetic) {
    for (const char* k : {"path", "placement"}) {
      if (s.Has(k))
        return s.Error(s.Get(k), std::string("'data.") + k + "' applies to source: shards only");
    }
    COHORT_RETURN_IF_ERROR(s.Read("samples", &d->samples));
    COHORT_RETURN_IF_ERROR(s.Read("teacher_hidden", &d->teacher_hidden));
    if (d->samples <= 0) return s.Error(s.Get("samples"), "'data.samples' must be positive");
    if (d->teacher_hidden <= 0)
      return s.Error(s.Get("teacher_hidden"), "'data.teacher_hidden' must be positive");
  } else {
    for (const char* k : {"samples", "teacher_hidden"}) {
      if (s.Has(k)) {
        return s.Error(s.Get(k), std::string("'data.") + k +
                                     "' applies to source: synthetic only (a shard directory "
                                     "records its own size)");
      }
    }
    COHORT_RETURN_IF_ERROR(s.Read("path", &d->path, /*required=*/true));
    COHORT_RETURN_IF_ERROR(s.Read("placement", &d->placement));
    static const std::set<std::string> kPlacements = {"modulo", "ring", "bounded", "jump",
                                                      "rendezvous"};
    if (!kPlacements.count(d->placement)) {
      return s.Error(s.Get("placement"),
                     "'data.placement' must be modulo, ring, bounded, jump or rendezvous, not '" +
                         d->placement + "'");
    }
  }
  return Status::Ok();
}

Status ParseParallel(Section& s, ParallelConfig* p) {
  COHORT_RETURN_IF_ERROR(s.Init({"tensor", "zero"}));
  COHORT_RETURN_IF_ERROR(s.Read("tensor", &p->tensor));
  COHORT_RETURN_IF_ERROR(s.Read("zero", &p->zero));
  if (p->tensor < 1 || p->tensor > 4096)
    return s.Error(s.Get("tensor"), "'parallel.tensor' must be in [1, 4096]");
  if (p->zero != 0 && p->zero != 1) {
    return s.Error(s.Get("zero"),
                   "'parallel.zero' must be 0 or 1 (ZeRO stage 1 partitions the optimizer state)");
  }
  return Status::Ok();
}

Status ParseCheckpoint(Section& s, CheckpointConfig* c) {
  COHORT_RETURN_IF_ERROR(s.Init({"dir", "every", "keep"}));
  COHORT_RETURN_IF_ERROR(s.Read("dir", &c->dir, /*required=*/true));
  COHORT_RETURN_IF_ERROR(s.Read("every", &c->every));
  COHORT_RETURN_IF_ERROR(s.Read("keep", &c->keep));
  if (c->dir.empty()) return s.Error(s.Get("dir"), "'checkpoint.dir' must not be empty");
  if (c->every < 0) return s.Error(s.Get("every"), "'checkpoint.every' must be >= 0");
  if (c->keep < 0) return s.Error(s.Get("keep"), "'checkpoint.keep' must be >= 0");
  return Status::Ok();
}

Status ParseElastic(Section& s, ElasticConfig* e) {
  COHORT_RETURN_IF_ERROR(s.Init({"batch", "lr"}));
  std::string batch = "per_rank", lr = "keep";
  COHORT_RETURN_IF_ERROR(s.Read("batch", &batch));
  COHORT_RETURN_IF_ERROR(s.Read("lr", &lr));
  if (batch == "per_rank")
    e->batch = ElasticBatch::kPerRank;
  else if (batch == "global")
    e->batch = ElasticBatch::kGlobal;
  else
    return s.Error(s.Get("batch"),
                   "'elastic.batch' must be per_rank or global, not '" + batch + "'");
  if (lr == "keep")
    e->lr = ElasticLr::kKeep;
  else if (lr == "linear")
    e->lr = ElasticLr::kLinear;
  else if (lr == "sqrt")
    e->lr = ElasticLr::kSqrt;
  else
    return s.Error(s.Get("lr"), "'elastic.lr' must be keep, linear or sqrt, not '" + lr + "'");
  return Status::Ok();
}

}  // namespace

Result<Config> ParseConfig(const std::string& yaml_text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    return InvalidArgument("config " + origin + ":" + std::to_string(e.mark.line + 1) +
                           ": not valid YAML: " + e.msg);
  }
  if (!root || root.IsNull()) return InvalidArgument("config " + origin + ": the file is empty");
  Config c;
  c.source = origin;
  c.text = yaml_text;
  Section top(root, "", origin);
  COHORT_RETURN_IF_ERROR(top.Init(
      {"seed", "model", "optimizer", "train", "data", "parallel", "checkpoint", "elastic"}));
  COHORT_RETURN_IF_ERROR(top.Read("seed", &c.seed));
  for (const char* required : {"model", "optimizer", "train"}) {
    if (!top.Has(required)) {
      return top.Error(root, std::string("missing required section '") + required + "'");
    }
  }
  Section model(top.Get("model"), "model", origin);
  COHORT_RETURN_IF_ERROR(ParseModel(model, &c.model));
  Section opt(top.Get("optimizer"), "optimizer", origin);
  COHORT_RETURN_IF_ERROR(ParseOptimizer(opt, &c.optimizer));
  Section train(top.Get("train"), "train", origin);
  COHORT_RETURN_IF_ERROR(ParseTrain(train, &c.train));
  if (top.Has("data")) {
    Section data(top.Get("data"), "data", origin);
    COHORT_RETURN_IF_ERROR(ParseData(data, &c.data));
  }
  const bool gpt = c.model.type == ModelType::kGpt;
  if (gpt != (c.data.source == DataSource::kTokens)) {
    const YAML::Node at = top.Has("data") ? top.Get("data") : top.Get("model");
    return top.Error(
        at, gpt ? "model.type gpt trains on token files: set data: {source: tokens, path: DIR} "
                  "(DIR from `cohort data tokenize`)"
                : "data.source tokens feeds a model of type gpt, not an mlp");
  }
  if (c.train.eval_every > 0 && c.data.source != DataSource::kTokens &&
      c.data.source != DataSource::kIdx) {
    return train.Error(
        train.Get("eval_every"),
        "'train.eval_every' needs a held-out split: data.source tokens (validation) or idx (test)");
  }
  if (top.Has("parallel")) {
    Section par(top.Get("parallel"), "parallel", origin);
    COHORT_RETURN_IF_ERROR(ParseParallel(par, &c.parallel));
    if (c.parallel.zero == 1 && c.train.compression != DType::kF32) {
      return par.Error(par.Get("zero"),
                       "'train.compression' works with parallel.zero 0 only (ZeRO-1 "
                       "reduce-scatters fp32 gradients); set one of them back");
    }
  }
  if (top.Has("checkpoint")) {
    Section ck(top.Get("checkpoint"), "checkpoint", origin);
    COHORT_RETURN_IF_ERROR(ParseCheckpoint(ck, &c.checkpoint));
  }
  if (top.Has("elastic")) {
    Section el(top.Get("elastic"), "elastic", origin);
    COHORT_RETURN_IF_ERROR(ParseElastic(el, &c.elastic));
  }
  return c;
}

Result<Config> LoadConfigFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return NotFound("config file not found: " + path);
    }
    return text.status();
  }
  return ParseConfig(*text, path);
}

Result<int64_t> Config::BatchPerRank(int data_ranks) const {
  if (train.batch_per_rank > 0) return train.batch_per_rank;
  if (train.global_batch % data_ranks != 0) {
    return InvalidArgument("config " + source + ": train.global_batch " +
                           std::to_string(train.global_batch) + " does not divide over " +
                           std::to_string(data_ranks) + " data-parallel ranks; use a multiple of " +
                           std::to_string(data_ranks) + " or set train.batch_per_rank");
  }
  return train.global_batch / data_ranks;
}

bool SameArchitecture(const ModelConfig& a, const ModelConfig& b) {
  if (a.type != b.type) return false;
  if (a.type == ModelType::kMlp) return a.layers == b.layers;
  const GptConfig &x = a.gpt, &y = b.gpt;
  return x.vocab == y.vocab && x.context == y.context && x.layers == y.layers &&
         x.heads == y.heads && x.width == y.width;
}

std::string DescribeModel(const ModelConfig& m) {
  if (m.type == ModelType::kGpt) {
    const GptConfig& g = m.gpt;
    return "gpt vocab " + std::to_string(g.vocab) + ", context " + std::to_string(g.context) +
           ", " + std::to_string(g.layers) + " layers, " + std::to_string(g.heads) +
           " heads, width " + std::to_string(g.width);
  }
  std::string s = "mlp ";
  for (size_t i = 0; i < m.layers.size(); ++i) s += (i ? "-" : "") + std::to_string(m.layers[i]);
  return s;
}

float ScheduledLr(const LrSchedule& schedule, float lr, int64_t step, int64_t steps) {
  const int64_t warmup = schedule.warmup_steps;
  if (step < warmup) return lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  if (schedule.decay == LrDecay::kNone) return lr;
  const double p = std::clamp(static_cast<double>(step - warmup) /
                                  static_cast<double>(std::max<int64_t>(1, steps - warmup)),
                              0.0, 1.0);
  const double lo = schedule.min_lr, hi = lr;
  if (schedule.decay == LrDecay::kCosine)
    return static_cast<float>(lo + (hi - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  return static_cast<float>(hi - (hi - lo) * p);
}

std::string Config::Canonical() const {
  std::ostringstream os;
  os.precision(9);
  os << "seed=" << seed << ";layers=";
  for (int64_t l : model.layers) os << l << ",";
  os << ";act=" << static_cast<int>(model.activation);
  os << ";opt=" << static_cast<int>(optimizer.type) << "," << optimizer.lr << ","
     << optimizer.momentum << "," << optimizer.nesterov << "," << optimizer.weight_decay << ","
     << optimizer.beta1 << "," << optimizer.beta2 << "," << optimizer.eps;
  os << ";train=" << train.steps << "," << train.batch_per_rank << "," << train.global_batch << ","
     << train.bucket_mb << "," << train.first_bucket_mb << "," << train.overlap << ","
     << static_cast<int>(train.compression);
  // Only non-default precisions add to the text, so fp32 configs keep the
  // hash they had before train.precision existed.
  if (train.precision != DType::kF32) {
    os << ";precision=" << static_cast<int>(train.precision);
    if (train.precision == DType::kF16) {
      os << "," << train.loss_scale.initial << "," << train.loss_scale.growth << ","
         << train.loss_scale.backoff << "," << train.loss_scale.growth_interval;
    }
  }
  os << ";data=" << static_cast<int>(data.source) << "," << data.samples << ","
     << data.teacher_hidden << "," << data.path << "," << data.placement;
  os << ";parallel=" << parallel.tensor << "," << parallel.zero;
  os << ";checkpoint=" << checkpoint.dir << "," << checkpoint.every << "," << checkpoint.keep;
  os << ";elastic=" << static_cast<int>(elastic.batch) << "," << static_cast<int>(elastic.lr);
  // Later keys add to the text only when set, so older configs keep their hash.
  if (model.type == ModelType::kGpt) {
    os << ";gpt=" << model.gpt.vocab << "," << model.gpt.context << "," << model.gpt.layers << ","
       << model.gpt.heads << "," << model.gpt.width;
  }
  const LrSchedule& ls = train.lr_schedule;
  if (ls.warmup_steps != 0 || ls.decay != LrDecay::kNone || ls.min_lr != 0) {
    os << ";lr_schedule=" << ls.warmup_steps << "," << static_cast<int>(ls.decay) << ","
       << ls.min_lr;
  }
  if (train.clip_grad_norm != 0) os << ";clip=" << train.clip_grad_norm;
  if (train.eval_every != 0) os << ";eval=" << train.eval_every << "," << train.eval_batches;
  return os.str();
}

uint64_t Config::Hash() const {
  const std::string c = Canonical();
  return HashCombine(Crc32c(c), c.size(), Crc32cExtend(0x5a5a5a5a, c.data(), c.size()));
}

}  // namespace cohort
