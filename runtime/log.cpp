// The "tessera" spdlog logger (stderr) and its level: config "log_level" or $TESSERA_LOG.
#include "log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <memory>

#include "error.h"

namespace tessera {

std::atomic<bool> g_trace_ops{false};

namespace {

// spdlog's names, plus "warning" as an alias of "warn". Returns false for an unknown name.
bool parse_level(const std::string& name, spdlog::level::level_enum* level) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},  {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},         {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
  };
  for (const auto& [text, value] : kLevels) {
    if (name == text) {
      *level = value;
      return true;
    }
  }
  return false;
}

// Created on first use, not registered with spdlog's global registry (so a host that
// has its own "tessera" logger is not disturbed). Starts at $TESSERA_LOG if valid, else
// warn; runtime_init then applies the config and reports a bad $TESSERA_LOG.
std::shared_ptr<spdlog::logger> make_logger() {
  auto logger =
      std::make_shared<spdlog::logger>("tessera", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_pattern("[%H:%M:%S.%e] [tessera] [%^%l%$] %v");
  spdlog::level::level_enum level = spdlog::level::warn;
  if (const char* env = std::getenv("TESSERA_LOG")) parse_level(env, &level);
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  g_trace_ops = level == spdlog::level::trace;
  return logger;
}

}  // namespace

spdlog::logger& log() {
  static const std::shared_ptr<spdlog::logger> logger = make_logger();
  return *logger;
}

void log_set_level(const std::string& level) {
  spdlog::level::level_enum value;
  if (!parse_level(level, &value)) {
    fail(TSR_ERR_INVALID_ARGUMENT,
         "unknown log level '" + level + "' (expected trace, debug, info, warn, error, critical or off)");
  }
  log().set_level(value);
  g_trace_ops = value == spdlog::level::trace;
}

}  // namespace tessera
