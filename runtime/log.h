// Logging through spdlog. Level from the config ("log_level") or $TESSERA_LOG, which wins.
// At "trace" the dispatcher logs every op with its device, shapes and time.
#pragma once

#include <atomic>
#include <string>

#include <spdlog/spdlog.h>

namespace tessera {

spdlog::logger& log();                 // the "tessera" logger (stderr)
void log_set_level(const std::string& level);  // "trace".."off"; throws on an unknown name
extern std::atomic<bool> g_trace_ops;  // true at trace level: checked once per op call

}  // namespace tessera
