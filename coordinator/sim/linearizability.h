#pragma once
// A linearizability checker for key-value histories: the Wing & Gong search
// with Lowe's memoisation (the algorithm of Porcupine and Knossos' "wgl").
// Linearizability is local (Herlihy & Wing), so each key is checked alone.
//
// An operation has a call time and a return time (distinct integers across
// the history). One that never returned (a crash, a timeout that gave up) has
// no output: it may take effect at any point after its call, or not at all.
//
// Thread safety: a pure function.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cohort::coordinator {

struct KvOp {
  enum class Kind : uint8_t { kGet, kPut, kCas };
  Kind kind = Kind::kGet;
  uint64_t client = 0;
  int64_t call = 0;
  int64_t ret = 0;         // ignored when !completed
  bool completed = false;  // the output below is known
  std::string key;
  std::string value;                    // kPut, kCas: new value
  std::optional<std::string> expected;  // kCas
  // Output: kGet: value read; kPut/kCas: value before; kCas: whether it swapped.
  std::optional<std::string> out;
  bool ok = false;
};

struct LinearizabilityResult {
  bool linearizable = true;
  bool gave_up = false;     // the search passed max_states for some key
  std::string failing_key;  // when !linearizable
  uint64_t states_explored = 0;
};

// `max_states` bounds the memo table per key (the search is NP-complete in
// general; with a few clients it stays small).
LinearizabilityResult CheckKvLinearizable(const std::vector<KvOp>& history,
                                          uint64_t max_states = 2'000'000);

// Human-readable dump of one key's operations, for failure reports.
std::string DescribeKvHistory(const std::vector<KvOp>& history, const std::string& key);

}  // namespace cohort::coordinator
