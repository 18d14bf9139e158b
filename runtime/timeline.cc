#include "runtime/timeline.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/file_util.h"

namespace cohort {

void Timeline::Add(const std::string& name, int track, double start_s, double end_s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.size() >= kMaxEvents) {
    ++dropped_;
    return;
  }
  events_.push_back({name, track, start_s, end_s});
}

size_t Timeline::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

std::string Timeline::EventsJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto add = [&](const nlohmann::json& j) {
    if (!out.empty()) out += ",\n";
    out += j.dump();
  };
  add({{"name", "process_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"args", {{"name", "rank " + std::to_string(rank_)}}}});
  add({{"name", "process_sort_index"},
       {"ph", "M"},
       {"pid", rank_},
       {"args", {{"sort_index", rank_}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", kComputeTrack},
       {"args", {{"name", "compute"}}}});
  add({{"name", "thread_name"},
       {"ph", "M"},
       {"pid", rank_},
       {"tid", kCommTrack},
       {"args", {{"name", "communication"}}}});
  for (const Event& e : events_) {
    add({{"name", e.name},
         {"ph", "X"},
         {"pid", rank_},
         {"tid", e.track},
         {"ts", (e.start_s - origin_s_) * 1e6},
         {"dur", (e.end_s - e.start_s) * 1e6}});
  }
  if (dropped_ > 0) {
    add({{"name", "events dropped: " + std::to_string(dropped_)},
         {"ph", "i"},
         {"pid", rank_},
         {"tid", 0},
         {"ts", 0},
         {"s", "p"}});
  }
  return out;
}

Status Timeline::WriteMerged(Communicator& world, const std::string& path) const {
  const std::string mine = EventsJson();
  // Two rounds: every rank's length, then every rank's bytes padded to the
  // longest (as int32 words, the smallest unit the communicator moves).
  const int64_t len = static_cast<int64_t>(mine.size());
  std::vector<int64_t> lens(static_cast<size_t>(world.size()));
  COHORT_RETURN_IF_ERROR(world.AllGather(&len, lens.data(), 1, DType::kI64));
  int64_t longest = 0;
  for (int64_t l : lens) longest = std::max(longest, l);
  const size_t words = static_cast<size_t>((longest + 3) / 4);
  std::vector<int32_t> send(words, 0), all(words * lens.size(), 0);
  std::memcpy(send.data(), mine.data(), mine.size());
  COHORT_RETURN_IF_ERROR(world.AllGather(send.data(), all.data(), words, DType::kI32));
  Status written;
  if (world.rank() == 0) {
    std::string trace = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
    for (size_t r = 0; r < lens.size(); ++r) {
      if (r > 0) trace += ",\n";
      trace.append(reinterpret_cast<const char*>(all.data() + r * words),
                   static_cast<size_t>(lens[r]));
    }
    trace += "\n]}\n";
    written = WriteFileAtomic(path, trace);
  }
  return AgreeOnStatus(world, written);
}

}  // namespace cohort
