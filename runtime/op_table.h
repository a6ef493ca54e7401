// Op ids and static facts about each op, expanded from api/include/tessera/ops.def.
#pragma once

#include <cstdint>

namespace tessera {

enum class OpKind : uint8_t { UNARY, BINARY, COMPARE, WHERE, CLAMP, COPY, FILL, ARANGE, REDUCE, SOFTMAX, MATMUL, RANDOM, VIEW, CONV, POOL, OPTIM,
                              NN, INDEX, SAMPLE, FOREACH, COMPOSITE };
enum class OpTypes : uint8_t { ANY, NUM, FLOAT, NONE };

enum OpId : int32_t {
#define TSR_OP(name, kind, types, diff) kOp_##name,
#include "tessera/ops.def"
#undef TSR_OP
  kNumOps
};

struct OpInfo {
  const char* name;
  OpKind kind;
  OpTypes types;
  bool differentiable;
};

inline constexpr OpInfo kOpInfo[kNumOps] = {
#define TSR_OP(name, kind, types, diff) {#name, OpKind::kind, OpTypes::types, diff != 0},
#include "tessera/ops.def"
#undef TSR_OP
};

// Op id for a name, or -1. Linear scan: used at registration time only.
int32_t op_lookup(const char* name);

}  // namespace tessera
