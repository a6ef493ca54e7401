// Helpers shared by the op front-ends (ops.cpp, ops_nn.cpp): messages, kernel lookup,
// kernel descriptors, given outputs (out=, in place) and the small kernels they use.
#pragma once

#include <cstdint>
#include <string>

#include "error.h"
#include "registry.h"
#include "tensor.h"

namespace tessera {

inline bool operator==(TsrDevice a, TsrDevice b) { return a.type == b.type && a.index == b.index; }

// "[op] "
std::string prefix(int32_t op);
// "input [2, 3] float32 on cpu" / "inputs ..., ..."
std::string inputs_str(TensorImpl* const* in, int32_t n);
// Throws "[op] what; inputs ...".
[[noreturn]] void op_fail(int32_t status, int32_t op, const std::string& what, TensorImpl* const* in, int32_t n);

// The kernel slot for (op, device) that handles `dtype` (and `dtype2`, for copy's destination);
// NOT_IMPLEMENTED otherwise, or a CPU fallback when the config asks for one.
[[noreturn]] void missing_kernel(int32_t op, TsrDevice dev, int32_t dtype, int32_t dtype2);
const KernelSlot& resolve(int32_t op, TsrDevice dev, int32_t dtype, int32_t dtype2 = -1);
// Logs once per op that it runs on the CPU because `dev` has no kernel (fallback "cpu").
void warn_cpu_fallback(int32_t op, TsrDevice dev);

// The kernel's view of t, and of t broadcast to the given sizes (stride 0 on broadcast dims).
TsrTensorDesc desc(const TensorImpl& t);
void broadcast_desc(TsrTensorDesc& d, const TensorImpl& t, const int64_t* sizes, int32_t ndim);
// Calls the kernel (outputs first); a failing kernel becomes an Error naming plugin and device.
void run(const KernelSlot& s, int32_t op, TsrTensorDesc* outs, const TsrTensorDesc* ins, int32_t nin,
         const TsrAttrs& attrs, int32_t nout = 1);

// dst[...] = src through dst's device's copy kernel (src broadcast to dst's sizes, same device).
void copy_kernel(TensorImpl& dst, const TensorImpl& src);
Tensor cast(const TensorImpl& t, int32_t dtype);
// t itself when it has `dtype`, else a converted copy kept alive by `keep`.
TensorImpl* as_dtype(TensorImpl* t, int32_t dtype, Tensor& keep);
void fill_kernel(TensorImpl& t, const TsrScalar& value);

// INVALID_ARGUMENT unless every input (and the given output) is on one device.
void check_devices(int32_t op, TensorImpl* const* in, int32_t n, const TensorImpl* out);
void check_scalar(int32_t op, const TsrScalar& s);
// A given output must have the result's shape, accept its dtype and not write one element twice.
void check_out(int32_t op, const TensorImpl& out, const int64_t* sizes, int32_t ndim, int32_t dtype,
               TensorImpl* const* in, int32_t n);
// Whether writing into `out` directly could clobber an input it does not alias exactly.
bool overlaps(const TensorImpl& out, TensorImpl* const* in, int32_t n, bool exact_ok);
// The tensor a kernel writes: the given output when direct_ok and of the result's dtype, else a
// fresh contiguous tensor that finish_out copies into the given output.
Tensor target(int32_t op, TensorImpl* given, const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice dev,
              TensorImpl* const* in, int32_t n, bool direct_ok);
// Stores a fresh result in *slot, or completes a given output (copy, version bump).
void finish_out(TensorImpl* given, Tensor& result, TensorImpl** slot);
void expect_inputs(int32_t op, int32_t got, int32_t want, const char* what);

// Front-ends of the CONV, POOL and OPTIM kinds (ops_nn.cpp).
void conv(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs);
void pool(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs);
void optim(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs);

// Front-ends of the NN, INDEX, SAMPLE, FOREACH and COMPOSITE kinds (ops_transformer.cpp).
// outs has natural_outputs(op, nin, nout) slots, NULL but for clip_grad_scale's and cat's out=.
void transformer_op(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                    int32_t nout);
// How many outputs op makes (layer_norm: y, mean, rstd), given its inputs and the outputs asked for.
int32_t natural_outputs(int32_t op, int32_t nin, int32_t requested);
int32_t max_inputs(int32_t op);
// Takes `count` Philox counters from dev's generator: the seed and the first counter.
void generator_take(TsrDevice dev, uint64_t count, uint64_t* seed, uint64_t* offset);

// The Philox seed/offset the last random op of this thread drew (dropout, attention with
// dropout), for autograd to replay the same mask in backward; take_drawn_rng() clears it.
struct DrawnRng {
  uint64_t seed = 0, offset = 0;
  bool set = false;
};
DrawnRng take_drawn_rng();
void set_deterministic(bool on);
bool deterministic();

}  // namespace tessera
