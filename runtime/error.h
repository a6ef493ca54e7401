// Errors inside the runtime: tessera::Error carries a TsrStatus and a message
// "[op] what went wrong (shapes, dtypes, device)"; guard() turns it into a status
// and the thread-local tsr_last_error() text at the C ABI boundary.
#pragma once

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "tessera/common.h"

namespace tessera {

class Error : public std::runtime_error {
 public:
  Error(int32_t status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int32_t status() const { return status_; }

 private:
  int32_t status_;
};

[[noreturn]] inline void fail(int32_t status, const std::string& message) { throw Error(status, message); }

// Thread-local message behind tsr_last_error().
void set_last_error(int32_t status, const std::string& message);
const char* last_error();

// Runs f, converting every exception into a status; nothing escapes.
template <class F>
int32_t guard(F&& f) noexcept {
  try {
    f();
    return TSR_OK;
  } catch (const Error& e) {
    set_last_error(e.status(), e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error(TSR_ERR_OUT_OF_MEMORY, "out of host memory");
    return TSR_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(TSR_ERR_RUNTIME, e.what());
    return TSR_ERR_RUNTIME;
  } catch (...) {
    set_last_error(TSR_ERR_RUNTIME, "unknown error");
    return TSR_ERR_RUNTIME;
  }
}

}  // namespace tessera
