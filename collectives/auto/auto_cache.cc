#include "collectives/auto/auto_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>

#include "cohort/config.h"
#include "core/crc32c.h"

namespace cohort {

std::string AutoCacheKey(const std::vector<std::string>& member_names,
                         const std::vector<int64_t>& host_hashes, const AutoOptions& options,
                         const std::string& build_id) {
  nlohmann::json k = {{"build", build_id},
                      {"members", member_names},
                      {"ranks", host_hashes.size()},
                      {"hosts", host_hashes},
                      {"max_calibration_bytes", options.max_calibration_bytes},
                      {"max_allreduce_calibration_bytes", options.max_allreduce_calibration_bytes},
                      {"iterations_small", options.iterations_small},
                      {"iterations_large", options.iterations_large}};
  return k.dump();
}

std::string AutoBuildId() {
  std::string id = std::string("cohort ") + COHORT_VERSION;
  char exe[PATH_MAX] = {};
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  struct stat st = {};
  if (n > 0 && ::stat(exe, &st) == 0) {
    id += " " + std::string(exe) + " " + std::to_string(st.st_size) + " " +
          std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
  }
  return id;
}

std::string DefaultCacheDir() {
  if (const char* d = std::getenv("COHORT_CACHE_DIR"); d != nullptr && *d != '\0') return d;
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d != nullptr && *d != '\0')
    return std::string(d) + "/cohort";
  if (const char* d = std::getenv("HOME"); d != nullptr && *d != '\0')
    return std::string(d) + "/.cache/cohort";
  return "";
}

std::string AutoCachePath(const std::string& dir, const std::string& key) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016zx", std::hash<std::string>{}(key));
  return dir + "/auto-" + hex + ".json";
}

namespace {

nlohmann::json TableJson(const AutoTable& table) {
  nlohmann::json rows = nlohmann::json::array();
  for (int op = 0; op < kAutoOps; ++op) {
    for (int reg = 0; reg < 2; ++reg) {
      for (const auto& c : table[static_cast<size_t>(op)][static_cast<size_t>(reg)]) {
        rows.push_back({op, reg, c.bytes, c.time_us, c.winner});
      }
    }
  }
  return rows;
}

}  // namespace

std::string EncodeAutoTable(const std::string& key, const AutoTable& table) {
  const std::string rows = TableJson(table).dump();
  const uint32_t crc = Crc32cExtend(Crc32c(key), rows.data(), rows.size());
  nlohmann::json j = {{"key", key}, {"crc32c", crc}, {"table", nlohmann::json::parse(rows)}};
  return j.dump() + "\n";
}

Result<AutoTable> DecodeAutoTable(const std::string& text, const std::string& key, size_t members) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("key") || !j.contains("crc32c") ||
      !j.contains("table") || !j["key"].is_string() || !j["table"].is_array() ||
      !j["crc32c"].is_number_unsigned()) {
    return DataLoss("not an auto calibration table");
  }
  const std::string file_key = j["key"].get<std::string>();
  const std::string rows = j["table"].dump();
  if (Crc32cExtend(Crc32c(file_key), rows.data(), rows.size()) != j["crc32c"].get<uint32_t>()) {
    return DataLoss("checksum mismatch");
  }
  if (file_key != key) return FailedPrecondition("measured for another build, layout or options");
  AutoTable table;
  try {
    for (const auto& r : j["table"]) {
      const int op = r.at(0).get<int>(), reg = r.at(1).get<int>();
      AutoCommunicator::Cell c;
      c.bytes = r.at(2).get<size_t>();
      c.time_us = r.at(3).get<std::vector<double>>();
      c.winner = r.at(4).get<int>();
      if (op < 0 || op >= kAutoOps || reg < 0 || reg > 1 || c.winner < 0 ||
          static_cast<size_t>(c.winner) >= members ||
          (c.time_us.size() != members && c.time_us.size() != 1)) {
        return DataLoss("a row does not fit " + std::to_string(members) + " members");
      }
      table[static_cast<size_t>(op)][static_cast<size_t>(reg)].push_back(std::move(c));
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("malformed row: ") + e.what());
  }
  for (const auto& op : table) {
    for (const auto& row : op) {
      if (row.empty()) return DataLoss("an operation has no row");
    }
  }
  return table;
}

}  // namespace cohort
