#pragma once
// Metrics for Prometheus: a registry of counters, gauges and summaries (as
// _sum/_count), each with a fixed label set, and their text exposition
// (format 0.0.4). core/metrics_server.h serves it over HTTP.
//
// Hot path: Counter::Inc, Gauge::Set and Summary::Observe are a few relaxed
// atomic operations, no lock and no allocation. Registration (Add*) takes the
// registry's lock and is meant for start-up; the pointers it returns stay
// valid for the registry's life. Every method of every class here is
// thread-safe.
//
// Values that live elsewhere (a coordinator's Raft state, a breaker per
// worker) are best read when scraped: AddCollector registers a callback that
// the exposition calls and that appends samples, with any labels, through a
// MetricsSink.
//
// A name or label that breaks the Prometheus grammar, or one name registered
// as two types, is a bug in the caller: COHORT_CHECK.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace cohort::metrics {

// (name, value) pairs, in the order they are printed.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kSummary };

// Monotonic; only grows (Inc with a negative value is a bug).
class Counter {
 public:
  void Inc(double by = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A summary without quantiles: the sum and the count of what was observed
// (Prometheus computes rates and means from them). The two are updated one
// after the other, so a scrape may see a sum one observation ahead of the
// count; both are exact once observations stop.
class Summary {
 public:
  void Observe(double v);
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> sum_{0.0};
  std::atomic<uint64_t> count_{0};
};

// Where a collector writes the samples it reads at scrape time. A summary's
// samples are given as one SummarySample call (sum and count).
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void CounterSample(const std::string& name, const std::string& help, const Labels& labels,
                             double value) = 0;
  virtual void GaugeSample(const std::string& name, const std::string& help, const Labels& labels,
                           double value) = 0;
  virtual void SummarySample(const std::string& name, const std::string& help, const Labels& labels,
                             double sum, uint64_t count) = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the metric with this name and labels, registering it on first
  // use (the help text of the first registration stays). Owned by the
  // registry.
  metrics::Counter* AddCounter(const std::string& name, const std::string& help,
                               const Labels& labels = {});
  metrics::Gauge* AddGauge(const std::string& name, const std::string& help,
                           const Labels& labels = {});
  metrics::Summary* AddSummary(const std::string& name, const std::string& help,
                               const Labels& labels = {});

  // Called at every scrape (on the scraping thread, without the registry's
  // lock held: it must be thread-safe itself, and may not call Add* or
  // AddCollector). Its samples join those registered; a name it uses must not
  // be registered with another type. Collectors stay for the registry's life.
  using Collector = std::function<void(MetricsSink& sink)>;
  void AddCollector(Collector collector);

  // The text exposition, format 0.0.4: metric families sorted by name, each
  // with its # HELP and # TYPE lines, then its samples in registration order
  // (collected samples after registered ones).
  std::string Exposition() const;

 private:
  struct Series {
    Labels labels;
    std::unique_ptr<metrics::Counter> counter;
    std::unique_ptr<metrics::Gauge> gauge;
    std::unique_ptr<metrics::Summary> summary;
  };
  struct Family {
    std::string help;
    MetricType type = MetricType::kGauge;
    std::vector<std::unique_ptr<Series>> series;
  };
  Series* Find(const std::string& name, const std::string& help, MetricType type,
               const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;  // guarded by mu_
  std::vector<Collector> collectors_;       // guarded by mu_
};

// Exposition helpers, exposed for tests.
// A label value with \ " and newline escaped as \\ \" \n.
std::string EscapeLabelValue(const std::string& v);
// A help text with \ and newline escaped as \\ \n.
std::string EscapeHelp(const std::string& v);
// A sample value: integers up to 2^53 without a fraction, others with 17
// significant digits, and +Inf, -Inf, NaN.
std::string FormatValue(double v);
bool ValidMetricName(const std::string& name);
bool ValidLabelName(const std::string& name);

}  // namespace cohort::metrics
