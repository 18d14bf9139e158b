#pragma once
// A per-rank timeline of training phases, written as one Chrome trace (JSON
// "traceEvents", opens in Perfetto or chrome://tracing) with one process per
// rank and one track per thread: compute (data, forward, backward, optimizer)
// and communication (each bucket's all-reduce), so overlap can be seen.
//
// Add() is thread-safe. The number of events is bounded (kMaxEvents); past
// it, events are counted as dropped and the trace says so.

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "core/status.h"

namespace cohort {

class Timeline {
 public:
  static constexpr size_t kMaxEvents = 1 << 20;
  static constexpr int kComputeTrack = 0;
  static constexpr int kCommTrack = 1;

  // `origin_s` is the steady-clock time that becomes 0 in the trace (take it
  // right after a barrier so ranks on one host line up).
  Timeline(int rank, double origin_s) : rank_(rank), origin_s_(origin_s) {}

  void Add(const std::string& name, int track, double start_s, double end_s);
  size_t size() const;

  // Collective over `world`: gathers every rank's events and rank 0 writes the
  // trace to `path` atomically. Every rank gets the same status.
  Status WriteMerged(Communicator& world, const std::string& path) const;

 private:
  std::string EventsJson() const;  // comma-separated events, no brackets
  struct Event {
    std::string name;
    int track;
    double start_s, end_s;
  };
  const int rank_;
  const double origin_s_;
  mutable std::mutex mu_;
  std::vector<Event> events_;  // guarded by mu_
  uint64_t dropped_ = 0;       // guarded by mu_
};

}  // namespace cohort
