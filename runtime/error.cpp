// The thread-local error message behind tsr_last_error().
#include "error.h"

namespace tessera {

namespace {
thread_local std::string t_last_error;
}

void set_last_error(int32_t, const std::string& message) { t_last_error = message; }
const char* last_error() { return t_last_error.c_str(); }

}  // namespace tessera
