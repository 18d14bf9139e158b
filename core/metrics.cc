#include "core/metrics.h"

#include <cmath>
#include <cstdio>

#include "core/check.h"

namespace cohort::metrics {
namespace {

// Integers this large and below print exactly without a fraction.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kSummary:
      return "summary";
  }
  return "untyped";
}

void CheckLabels(const std::string& name, const Labels& labels) {
  for (const auto& [k, v] : labels) {
    COHORT_CHECK(ValidLabelName(k)) << "metric " << name << ": bad label name '" << k << "'";
  }
}

// "{a="x",b="y"}", or "" without labels.
std::string LabelText(const Labels& labels) {
  if (labels.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) out += ",";
    out += labels[i].first + "=\"" + EscapeLabelValue(labels[i].second) + "\"";
  }
  return out + "}";
}

// One family's text while an exposition is assembled.
struct Text {
  std::string help;
  MetricType type = MetricType::kGauge;
  std::string samples;
};

class Assembler final : public MetricsSink {
 public:
  void CounterSample(const std::string& name, const std::string& help, const Labels& labels,
                     double value) override {
    Line(Get(name, help, MetricType::kCounter), name, labels, value);
  }
  void GaugeSample(const std::string& name, const std::string& help, const Labels& labels,
                   double value) override {
    Line(Get(name, help, MetricType::kGauge), name, labels, value);
  }
  void SummarySample(const std::string& name, const std::string& help, const Labels& labels,
                     double sum, uint64_t count) override {
    Text& t = Get(name, help, MetricType::kSummary);
    Line(t, name + "_sum", labels, sum);
    Line(t, name + "_count", labels, static_cast<double>(count));
  }
  std::string Finish() const {
    std::string out;
    for (const auto& [name, t] : texts_) {
      out += "# HELP " + name + " " + EscapeHelp(t.help) + "\n";
      out += "# TYPE " + name + " " + TypeName(t.type) + "\n";
      out += t.samples;
    }
    return out;
  }

 private:
  Text& Get(const std::string& name, const std::string& help, MetricType type) {
    COHORT_CHECK(ValidMetricName(name)) << "bad metric name '" << name << "'";
    auto [it, fresh] = texts_.try_emplace(name);
    if (fresh) {
      it->second.help = help;
      it->second.type = type;
    }
    COHORT_CHECK(it->second.type == type)
        << "metric " << name << " is a " << TypeName(it->second.type) << " and a "
        << TypeName(type);
    return it->second;
  }
  static void Line(Text& t, const std::string& name, const Labels& labels, double v) {
    t.samples += name + LabelText(labels) + " " + FormatValue(v) + "\n";
  }
  std::map<std::string, Text> texts_;
};

}  // namespace

void Counter::Inc(double by) {
  COHORT_CHECK(by >= 0) << "a counter only grows (Inc by " << by << ")";
  value_.fetch_add(by, std::memory_order_relaxed);
}

void Summary::Observe(double v) {
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Registry::Series* Registry::Find(const std::string& name, const std::string& help, MetricType type,
                                 const Labels& labels) {
  COHORT_CHECK(ValidMetricName(name)) << "bad metric name '" << name << "'";
  CheckLabels(name, labels);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = families_.try_emplace(name);
  Family& f = it->second;
  if (fresh) {
    f.help = help;
    f.type = type;
  }
  COHORT_CHECK(f.type == type) << "metric " << name << " registered as a " << TypeName(f.type)
                               << " and a " << TypeName(type);
  for (auto& s : f.series) {
    if (s->labels == labels) return s.get();
  }
  auto s = std::make_unique<Series>();
  s->labels = labels;
  switch (type) {
    case MetricType::kCounter:
      s->counter = std::make_unique<metrics::Counter>();
      break;
    case MetricType::kGauge:
      s->gauge = std::make_unique<metrics::Gauge>();
      break;
    case MetricType::kSummary:
      s->summary = std::make_unique<metrics::Summary>();
      break;
  }
  f.series.push_back(std::move(s));
  return f.series.back().get();
}

Counter* Registry::AddCounter(const std::string& name, const std::string& help,
                              const Labels& labels) {
  return Find(name, help, MetricType::kCounter, labels)->counter.get();
}

Gauge* Registry::AddGauge(const std::string& name, const std::string& help, const Labels& labels) {
  return Find(name, help, MetricType::kGauge, labels)->gauge.get();
}

Summary* Registry::AddSummary(const std::string& name, const std::string& help,
                              const Labels& labels) {
  return Find(name, help, MetricType::kSummary, labels)->summary.get();
}

void Registry::AddCollector(Collector collector) {
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Exposition() const {
  Assembler a;
  std::vector<Collector> collectors;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, f] : families_) {
      for (const auto& s : f.series) {
        switch (f.type) {
          case MetricType::kCounter:
            a.CounterSample(name, f.help, s->labels, s->counter->value());
            break;
          case MetricType::kGauge:
            a.GaugeSample(name, f.help, s->labels, s->gauge->value());
            break;
          case MetricType::kSummary:
            a.SummarySample(name, f.help, s->labels, s->summary->sum(), s->summary->count());
            break;
        }
      }
    }
    collectors = collectors_;
  }
  for (const Collector& c : collectors) c(a);
  return a.Finish();
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::trunc(v) && std::fabs(v) <= kMaxExactInteger) {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof(buf), "%.17g", v);
  }
  return buf;
}

bool ValidMetricName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool ValidLabelName(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0) return false;  // "__" is reserved by Prometheus
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

}  // namespace cohort::metrics
