#include "runtime/checkpoint.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/crc32c.h"
#include "core/file_util.h"
#include "runtime/model.h"
#include "runtime/safetensors.h"

namespace cohort {
namespace fs = std::filesystem;

std::string CheckpointStepDir(const std::string& dir, int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%09lld", static_cast<long long>(step));
  return dir + "/" + buf;
}

std::string CheckpointShardName(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank-%05d.safetensors", rank);
  return buf;
}

namespace {

constexpr char kManifest[] = "MANIFEST.json";

nlohmann::json LayoutJson(const CheckpointLayout& l) {
  nlohmann::json j = {{"format", kCheckpointFormat},
                      {"step", l.step},
                      {"world_size", l.world_size},
                      {"tensor", l.tensor},
                      {"data", l.data},
                      {"zero", l.zero},
                      {"optimizer", l.optimizer},
                      {"optimizer_steps", l.optimizer_steps},
                      {"config_hash", l.config_hash}};
  if (!l.config_yaml.empty()) j["config"] = l.config_yaml;
  if (l.model.type == ModelType::kGpt) {
    const GptConfig& g = l.model.gpt;
    j["model"] = {{"type", "gpt"},      {"vocab", g.vocab}, {"context", g.context},
                  {"layers", g.layers}, {"heads", g.heads}, {"width", g.width}};
  } else {
    j["layers"] = l.model.layers;  // an MLP's manifest, as before GPTs existed
  }
  return j;
}

Result<CheckpointLayout> ParseLayout(const nlohmann::json& j, const std::string& where) {
  try {
    if (j.at("format").get<std::string>() != kCheckpointFormat) {
      return DataLoss(where + ": format " + j.at("format").get<std::string>() +
                      ", this build reads " + kCheckpointFormat);
    }
    CheckpointLayout l;
    l.step = j.at("step").get<int64_t>();
    l.world_size = j.at("world_size").get<int>();
    l.tensor = j.at("tensor").get<int>();
    l.data = j.at("data").get<int>();
    l.zero = j.at("zero").get<int>();
    if (j.contains("model")) {
      const nlohmann::json& m = j.at("model");
      if (m.at("type").get<std::string>() != "gpt")
        return DataLoss(where + ": unknown model type " + m.at("type").dump());
      l.model.type = ModelType::kGpt;
      GptConfig& g = l.model.gpt;
      g.vocab = m.at("vocab").get<int64_t>();
      g.context = m.at("context").get<int64_t>();
      g.layers = m.at("layers").get<int64_t>();
      g.heads = m.at("heads").get<int64_t>();
      g.width = m.at("width").get<int64_t>();
      if (g.vocab < 1 || g.context < 1 || g.layers < 1 || g.heads < 1 || g.width < 1 ||
          g.width % g.heads != 0) {
        return DataLoss(where + ": inconsistent model " + m.dump());
      }
    } else {
      l.model.layers = j.at("layers").get<std::vector<int64_t>>();
      if (l.model.layers.size() < 2)
        return DataLoss(where + ": inconsistent layout (fewer than two layer sizes)");
    }
    l.optimizer = j.at("optimizer").get<std::string>();
    l.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
    l.config_hash = j.at("config_hash").get<std::string>();
    l.config_yaml = j.value("config", std::string());
    if (l.tensor < 1 || l.data < 1 || l.tensor * l.data != l.world_size) {
      return DataLoss(where + ": inconsistent layout");
    }
    return l;
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(where + ": malformed manifest: " + e.what());
  }
}

}  // namespace

CheckpointWriter::CheckpointWriter() : worker_([this] { Loop(); }) {}

CheckpointWriter::~CheckpointWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void CheckpointWriter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || has_job_; });
    if (has_job_) {  // finish a queued write even when stopping: it may be committed
      auto job = std::move(job_);
      has_job_ = false;
      lock.unlock();
      Result<ShardWritten> r = job();
      lock.lock();
      result_.emplace(std::move(r));
      done_ = true;
      cv_.notify_all();
      continue;
    }
    if (stop_) return;
  }
}

void CheckpointWriter::Submit(const std::string& dir, const CheckpointLayout& layout,
                              CheckpointShard shard) {
  COHORT_CHECK(!submitted_) << "Submit before the previous write was collected";
  submitted_ = true;
  auto job = [dir, layout, shard = std::move(shard)]() -> Result<ShardWritten> {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string step_dir = CheckpointStepDir(dir, layout.step);
    COHORT_RETURN_IF_ERROR(MakeDirs(step_dir));
    std::vector<NamedTensor> ts;
    for (const auto& [name, t] : shard.tensors) ts.push_back({name, t});
    const std::string path = step_dir + "/" + CheckpointShardName(shard.rank);
    std::map<std::string, std::string> meta = shard.metadata;
    for (auto& [k, v] :
         std::map<std::string, std::string>{{"format", kCheckpointFormat},
                                            {"step", std::to_string(layout.step)},
                                            {"rank", std::to_string(shard.rank)},
                                            {"tensor_rank", std::to_string(shard.tensor_rank)},
                                            {"data_rank", std::to_string(shard.data_rank)},
                                            {"optim_offset", std::to_string(shard.optim_offset)}}) {
      meta[k] = v;  // the writer's own entries win
    }
    COHORT_RETURN_IF_ERROR(WriteSafetensors(path, ts, meta));
    COHORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return ShardWritten{static_cast<int64_t>(bytes.size()), Crc32c(bytes), ms};
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    has_job_ = true;
    done_ = false;
    result_.reset();
  }
  cv_.notify_all();
}

Result<ShardWritten> CheckpointWriter::Wait() {
  if (!submitted_) return FailedPrecondition("no checkpoint write in flight");
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  submitted_ = false;
  Result<ShardWritten> r = std::move(*result_);
  result_.reset();
  return r;
}

std::string ManifestChecksum(const std::string& manifest_bytes) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "crc32c:%08x", Crc32c(manifest_bytes));
  return buf;
}

Result<std::string> ReadManifestChecksum(const std::string& step_dir) {
  auto text = ReadFile(step_dir + "/" + kManifest);
  if (!text.ok()) return NotFound("checkpoint " + step_dir + " has no " + kManifest);
  return ManifestChecksum(*text);
}

Result<bool> CommitCheckpoint(const std::string& dir, const CheckpointLayout& layout,
                              const std::vector<ShardWritten>& shards, int keep,
                              CheckpointCommitter* committer) {
  const std::string step_dir = CheckpointStepDir(dir, layout.step);
  nlohmann::json m = LayoutJson(layout);
  m["shards"] = nlohmann::json::array();
  for (size_t r = 0; r < shards.size(); ++r) {
    const std::string name = CheckpointShardName(static_cast<int>(r));
    std::error_code ec;
    const auto size = fs::file_size(step_dir + "/" + name, ec);
    if (ec || static_cast<int64_t>(size) != shards[r].bytes) {
      return DataLoss("checkpoint shard " + step_dir + "/" + name +
                      " is missing or not the size its rank reported");
    }
    m["shards"].push_back(
        {{"file", name}, {"rank", r}, {"bytes", shards[r].bytes}, {"crc32c", shards[r].crc32c}});
  }
  const std::string manifest = m.dump(1) + "\n";
  const std::string manifest_path = step_dir + "/" + kManifest;
  COHORT_RETURN_IF_ERROR(WriteFileAtomic(manifest_path, manifest));
  if (committer != nullptr) {
    Result<bool> c = committer->Commit(layout, step_dir, ManifestChecksum(manifest));
    if (!c.ok() || !*c) {
      std::error_code ec;
      fs::remove(manifest_path, ec);  // best effort: restores by the committer never read it anyway
      return c;
    }
  }
  // Retention: newest `keep` committed checkpoints, nothing uncommitted older than this one.
  COHORT_ASSIGN_OR_RETURN(auto all, ListCheckpoints(dir));
  int kept = 0;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const bool old_uncommitted = !it->committed && it->step < layout.step;
    const bool surplus = it->committed && ++kept > keep && keep > 0;
    if (old_uncommitted || surplus) {
      std::error_code ec;
      fs::remove_all(it->path, ec);  // best effort: a leftover directory is harmless
    }
  }
  return true;
}

Result<std::vector<CheckpointInfo>> ListCheckpoints(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound("checkpoint directory not found: " + dir);
  std::vector<CheckpointInfo> out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    long long step = 0;
    if (!e.is_directory() || std::sscanf(e.path().filename().c_str(), "step-%lld", &step) != 1)
      continue;
    CheckpointInfo info;
    info.step = step;
    info.path = e.path().string();
    for (const auto& f : fs::directory_iterator(e.path(), ec)) {
      if (f.is_regular_file()) info.bytes += static_cast<int64_t>(f.file_size(ec));
    }
    auto text = ReadFile(info.path + "/" + kManifest);
    if (text.ok()) {
      nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
      auto layout = j.is_discarded() ? Result<CheckpointLayout>(DataLoss("bad manifest"))
                                     : ParseLayout(j, info.path + "/" + kManifest);
      if (layout.ok()) {
        info.committed = true;
        info.layout = *layout;
      }
    }
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

Result<LoadedCheckpoint> LoadCheckpoint(const std::string& step_dir) {
  const std::string mpath = step_dir + "/" + kManifest;
  auto text = ReadFile(mpath);
  if (!text.ok())
    return NotFound("checkpoint " + step_dir + " is not committed (no " + kManifest + ")");
  nlohmann::json m = nlohmann::json::parse(*text, nullptr, false);
  if (m.is_discarded()) return DataLoss(mpath + ": not valid JSON");
  LoadedCheckpoint ck;
  COHORT_ASSIGN_OR_RETURN(ck.layout, ParseLayout(m, mpath));
  const CheckpointLayout& L = ck.layout;
  if (!m.contains("shards") || m["shards"].size() != static_cast<size_t>(L.world_size)) {
    return DataLoss(mpath + ": lists " +
                    std::to_string(m.value("shards", nlohmann::json::array()).size()) +
                    " shards for a world of " + std::to_string(L.world_size));
  }
  // Read and check every shard against the manifest.
  std::vector<SafetensorsFile> files(static_cast<size_t>(L.world_size));
  for (const auto& s : m["shards"]) {
    const int r = s.at("rank").get<int>();
    const std::string path = step_dir + "/" + s.at("file").get<std::string>();
    if (r < 0 || r >= L.world_size)
      return DataLoss(mpath + ": shard rank " + std::to_string(r) + " out of range");
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return DataLoss("checkpoint shard missing: " + path);
    if (static_cast<int64_t>(bytes->size()) != s.at("bytes").get<int64_t>() ||
        Crc32c(*bytes) != s.at("crc32c").get<uint32_t>()) {
      return DataLoss("checkpoint shard " + path + " is damaged (size or CRC32C differs from " +
                      kManifest + ")");
    }
    COHORT_ASSIGN_OR_RETURN(files[static_cast<size_t>(r)], ReadSafetensors(path));
  }
  // Reassemble the whole model from each tensor rank's part.
  const Status layers_ok = CheckModel(L.model, L.tensor);
  if (!layers_ok.ok()) return DataLoss(mpath + ": " + layers_ok.message());
  const int64_t full_n = MakeModelLayout(L.model, 1, 0)->full_num_params();
  ck.params.assign(static_cast<size_t>(full_n), 0.0f);
  std::vector<std::string> optim_names;
  for (const auto& nt : files[0].tensors) {
    if (nt.name.rfind("optim.", 0) == 0) optim_names.push_back(nt.name.substr(6));
  }
  for (const auto& name : optim_names) ck.optim[name].assign(static_cast<size_t>(full_n), 0.0f);
  ck.metadata = files[0].metadata;
  for (int t = 0; t < L.tensor; ++t) {
    const std::unique_ptr<Model> layout = MakeModelLayout(L.model, L.tensor, t);
    const Model& part = *layout;
    const int64_t n = part.num_params();
    // Data rank 0 of tensor group column t is world rank t (tensor groups are contiguous).
    const SafetensorsFile& lead = files[static_cast<size_t>(t)];
    const Tensor* p = lead.Find("param");
    if (!p || p->numel() != n)
      return DataLoss("checkpoint shard " + step_dir + "/" + CheckpointShardName(t) +
                      " lacks its parameters");
    part.LocalToFull(p->data<float>(), ck.params.data());
    for (const auto& name : optim_names) {
      std::vector<float> local(static_cast<size_t>(n), 0.0f);
      for (int d = 0; d < (L.zero == 1 ? L.data : 1); ++d) {
        const int r = d * L.tensor + t;
        const SafetensorsFile& f = files[static_cast<size_t>(r)];
        const Tensor* st = f.Find("optim." + name);
        const auto off_it = f.metadata.find("optim_offset");
        if (!st || off_it == f.metadata.end()) {
          return DataLoss("checkpoint shard " + step_dir + "/" + CheckpointShardName(r) +
                          " lacks optimizer state " + name);
        }
        const int64_t off = std::stoll(off_it->second);
        if (off < 0 || off + st->numel() > n) {
          return DataLoss("checkpoint shard " + step_dir + "/" + CheckpointShardName(r) +
                          ": optimizer partition out of range");
        }
        std::memcpy(local.data() + off, st->data<float>(), st->nbytes());
      }
      part.LocalToFull(local.data(), ck.optim[name].data());
    }
  }
  return ck;
}

Result<LoadedCheckpoint> LoadLatestCheckpoint(const std::string& dir,
                                              std::vector<std::string>* warnings) {
  COHORT_ASSIGN_OR_RETURN(auto all, ListCheckpoints(dir));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!it->committed) continue;
    auto ck = LoadCheckpoint(it->path);
    if (ck.ok()) return ck;
    if (warnings)
      warnings->push_back(ck.status().message() + "; trying the previous committed checkpoint");
  }
  return NotFound("no committed checkpoint in " + dir);
}

Result<LoadedCheckpoint> LoadNewestCommitted(std::vector<CommittedCheckpoint> committed,
                                             std::vector<std::string>* warnings) {
  std::sort(committed.begin(), committed.end(),
            [](const auto& a, const auto& b) { return a.step > b.step; });
  for (const auto& c : committed) {
    std::string why;
    auto sum = ReadManifestChecksum(c.path);
    if (!sum.ok()) {
      why = sum.status().message();
    } else if (*sum != c.checksum) {
      why = "checkpoint " + c.path + ": " + kManifest + " has checksum " + *sum +
            ", the committed one is " + c.checksum;
    } else {
      auto ck = LoadCheckpoint(c.path);
      if (ck.ok() && ck->layout.step != c.step) {
        why = "checkpoint " + c.path + " holds step " + std::to_string(ck->layout.step) +
              ", committed as step " + std::to_string(c.step);
      } else if (ck.ok()) {
        return ck;
      } else {
        why = ck.status().message();
      }
    }
    if (warnings) warnings->push_back(why + "; trying the previous committed checkpoint");
  }
  return NotFound("none of the " + std::to_string(committed.size()) +
                  " committed checkpoint(s) loads");
}

}  // namespace cohort
