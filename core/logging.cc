#include "core/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace cohort {

void InitLogging(const std::string& process_name, LogLevel level) {
  auto logger = spdlog::stderr_logger_mt("cohort-" + process_name);
  logger->set_pattern("[%H:%M:%S.%e] [" + process_name + "] %l: %v");
  switch (level) {
    case LogLevel::kDebug:
      logger->set_level(spdlog::level::debug);
      break;
    case LogLevel::kInfo:
      logger->set_level(spdlog::level::info);
      break;
    case LogLevel::kWarn:
      logger->set_level(spdlog::level::warn);
      break;
    case LogLevel::kError:
      logger->set_level(spdlog::level::err);
      break;
  }
  spdlog::set_default_logger(logger);
}

LogLevel ParseLogLevel(const std::string& name, LogLevel fallback) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return fallback;
}

}  // namespace cohort
