/* The stable C ABI for hosts (Python through ctypes, C and C++ programs, tools/).
 *
 * Every function returns a TsrStatus (TSR_OK == 0); on failure the message, which names
 * the op, the shapes, the dtypes and the device, is in tsr_last_error() (thread-local,
 * valid until the next failing call on that thread). Nothing throws, aborts or exits
 * across this boundary. Tensors are reference-counted handles: every TsrTensor a
 * function returns through an out-parameter is owned by the caller, who gives it back
 * with tsr_release(). C99. */
#ifndef TESSERA_TESSERA_H
#define TESSERA_TESSERA_H

#include "tessera/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSR_ABI_MAJOR 1
#define TSR_ABI_MINOR 3 /* 1.1: autograd, CONV/POOL/OPTIM ops, TsrAttrs grew to 528 bytes.
                           1.2: streams, events, memory statistics, graphs, device options
                           1.3: transformer ops (NN/INDEX/SAMPLE/FOREACH/COMPOSITE kinds),
                                ops with several outputs, deterministic mode */

#if defined(TSR_BUILDING_RUNTIME)
#define TSR_API __attribute__((visibility("default")))
#else
#define TSR_API
#endif

typedef struct TsrTensorImpl* TsrTensor;

/* ---- runtime ------------------------------------------------------------------- */

TSR_API int32_t tsr_abi_version(uint32_t* major, uint32_t* minor);
/* Load the config and its plugins. config_path NULL: $TESSERA_CONFIG, else the default
 * config installed beside the library (<libdir>/tessera/default.json). Calling it again
 * while initialized is a no-op that returns TSR_OK. */
TSR_API int32_t tsr_init(const char* config_path);
TSR_API int32_t tsr_shutdown(void);
TSR_API const char* tsr_last_error(void);
/* The runtime's state as one JSON object (abi, config, plugins, devices, ops): what
 * tessera-info prints. The string stays valid until the next call on this thread. */
TSR_API int32_t tsr_info_json(const char** out);

/* ---- dtypes, devices, scalars, attrs --------------------------------------------- */

TSR_API const char* tsr_dtype_name(int32_t dtype); /* "float32"; NULL if unknown */
TSR_API int32_t tsr_dtype_parse(const char* name, int32_t* dtype);
TSR_API int32_t tsr_dtype_itemsize(int32_t dtype, size_t* itemsize);
/* "cpu", "cuda", "cuda:1", or a plugin's own type name. */
TSR_API int32_t tsr_device_parse(const char* text, TsrDevice* device);
/* Writes e.g. "cuda:0" into buf (NUL-terminated, truncated to size). */
TSR_API int32_t tsr_device_name(TsrDevice device, char* buf, size_t size);
TSR_API int32_t tsr_device_count(const char* type_name, int32_t* count);
TSR_API int32_t tsr_synchronize(TsrDevice device);

/* Fills attrs with defaults: struct_size set, everything else 0 except dtype = -1,
 * scalar_arg = -1, alpha = 1, scalar3 (arange step) = 1, correction = 1. */
TSR_API void tsr_attrs_init(TsrAttrs* attrs);

static inline TsrScalar tsr_scalar_float(double v) {
  TsrScalar s; s.kind = TSR_SCALAR_FLOAT; s.reserved = 0; s.v.f = v; return s;
}
static inline TsrScalar tsr_scalar_int(int64_t v) {
  TsrScalar s; s.kind = TSR_SCALAR_INT; s.reserved = 0; s.v.i = v; return s;
}
static inline TsrScalar tsr_scalar_bool(int v) {
  TsrScalar s; s.kind = TSR_SCALAR_BOOL; s.reserved = 0; s.v.i = v ? 1 : 0; return s;
}

/* ---- tensors ---------------------------------------------------------------------- */

/* Everything about a tensor in one call. Set info->struct_size = sizeof(TsrTensorInfo)
 * first: the runtime writes at most that many bytes (older hosts get the members they know). */
typedef struct TsrTensorInfo {
  uint32_t struct_size;
  int32_t dtype;
  TsrDevice device;
  int32_t ndim;
  int32_t is_contiguous;
  int64_t sizes[TSR_MAX_DIMS];
  int64_t strides[TSR_MAX_DIMS]; /* in elements */
  int64_t storage_offset;        /* in elements */
  int64_t numel;
  void* data;       /* address of the first element (device memory for devices) */
  uint64_t version; /* bumped by every in-place change of the storage, shared by views */
} TsrTensorInfo;

TSR_API int32_t tsr_tensor_info(TsrTensor t, TsrTensorInfo* info);
TSR_API int32_t tsr_retain(TsrTensor t);
TSR_API int32_t tsr_release(TsrTensor t); /* NULL is accepted and ignored */

TSR_API int32_t tsr_empty(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device,
                          TsrTensor* out);
TSR_API int32_t tsr_full(const int64_t* sizes, int32_t ndim, int32_t dtype, TsrDevice device,
                         TsrScalar value, TsrTensor* out);
/* Copies numel*itemsize bytes of contiguous row-major host data. */
TSR_API int32_t tsr_from_buffer(const void* data, const int64_t* sizes, int32_t ndim,
                                int32_t dtype, TsrDevice device, TsrTensor* out);
/* Wraps memory the caller owns, without copying; deleter(ctx) runs when the last view is
 * released (deleter may be NULL). strides NULL means contiguous. */
TSR_API int32_t tsr_from_borrowed(void* data, const int64_t* sizes, const int64_t* strides,
                                  int32_t ndim, int32_t dtype, TsrDevice device,
                                  void (*deleter)(void* ctx), void* ctx, TsrTensor* out);
/* Writes the elements in row-major order and t's dtype; nbytes must be numel*itemsize. */
TSR_API int32_t tsr_copy_to_host(TsrTensor t, void* dst, size_t nbytes);
/* A copy on `device` with `dtype` (-1 keeps t's dtype); returns t itself (retained) when
 * nothing would change. */
TSR_API int32_t tsr_to(TsrTensor t, TsrDevice device, int32_t dtype, TsrTensor* out);
TSR_API int32_t tsr_contiguous(TsrTensor t, TsrTensor* out); /* t itself if contiguous */
TSR_API int32_t tsr_clone(TsrTensor t, TsrTensor* out);
TSR_API int32_t tsr_manual_seed(uint64_t seed);
/* Deterministic mode (1.3): scatter-adds (embedding's, gather's backward) give bitwise the
 * same result run to run on every device (the CPU always does). Off by default. */
TSR_API int32_t tsr_use_deterministic_algorithms(int32_t on);
TSR_API int32_t tsr_deterministic_algorithms_enabled(void);

/* ---- views (no copy; share storage and version counter) ---------------------------- */

/* view: strides must allow it; reshape: copies only when they don't (as PyTorch). One
 * size may be -1. */
TSR_API int32_t tsr_view(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out);
TSR_API int32_t tsr_reshape(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out);
TSR_API int32_t tsr_permute(TsrTensor t, const int64_t* dims, int32_t ndim, TsrTensor* out);
TSR_API int32_t tsr_transpose(TsrTensor t, int64_t dim0, int64_t dim1, TsrTensor* out);
TSR_API int32_t tsr_t(TsrTensor t, TsrTensor* out); /* 2-D transpose (0-D, 1-D: itself) */
/* Python's t[start:end:step] along dim, with Python's clamping; step > 0. */
TSR_API int32_t tsr_slice(TsrTensor t, int64_t dim, int64_t start, int64_t end, int64_t step,
                          TsrTensor* out);
TSR_API int32_t tsr_narrow(TsrTensor t, int64_t dim, int64_t start, int64_t length,
                           TsrTensor* out);
TSR_API int32_t tsr_select(TsrTensor t, int64_t dim, int64_t index, TsrTensor* out);
TSR_API int32_t tsr_expand(TsrTensor t, const int64_t* sizes, int32_t ndim, TsrTensor* out);
/* dims NULL/ndims 0: every size-1 dim. */
TSR_API int32_t tsr_squeeze(TsrTensor t, const int64_t* dims, int32_t ndims, TsrTensor* out);
TSR_API int32_t tsr_unsqueeze(TsrTensor t, int64_t dim, TsrTensor* out);
TSR_API int32_t tsr_flatten(TsrTensor t, int64_t start_dim, int64_t end_dim, TsrTensor* out);
TSR_API int32_t tsr_as_strided(TsrTensor t, const int64_t* sizes, const int64_t* strides,
                               int32_t ndim, int64_t storage_offset, TsrTensor* out);

/* ---- ops ----------------------------------------------------------------------------- */

TSR_API int32_t tsr_op_count(void);
TSR_API const char* tsr_op_name(int32_t op);
TSR_API int32_t tsr_op_lookup(const char* name, int32_t* op);

/* Calls any op of ops.def. For each i < num_outputs: outputs[i] == NULL asks the runtime
 * to allocate the result (returned owned); a tensor there is written in place (out=,
 * in-place ops: its version counter is bumped, its dtype must be one the result can be
 * cast to, its shape the result's). attrs may be NULL for defaults. */
TSR_API int32_t tsr_call(int32_t op, const TsrTensor* inputs, int32_t num_inputs,
                         const TsrAttrs* attrs, TsrTensor* outputs, int32_t num_outputs);

/* One typed entry point (or two) per op, generated from ops.def by kind. */
#define TSR_DECL_UNARY(name) TSR_API int32_t tsr_##name(TsrTensor x, TsrTensor* out);
#define TSR_DECL_BINARY(name)                                                  \
  TSR_API int32_t tsr_##name(TsrTensor a, TsrTensor b, TsrTensor* out);        \
  TSR_API int32_t tsr_##name##_scalar(TsrTensor a, TsrScalar b, TsrTensor* out);
#define TSR_DECL_COMPARE(name) TSR_DECL_BINARY(name)
#define TSR_DECL_WHERE(name) \
  TSR_API int32_t tsr_##name(TsrTensor cond, TsrTensor a, TsrTensor b, TsrTensor* out);
/* min/max NULL: no bound. */
#define TSR_DECL_CLAMP(name)                                                          \
  TSR_API int32_t tsr_##name(TsrTensor x, const TsrScalar* min, const TsrScalar* max, \
                             TsrTensor* out);
/* dst[...] = src, src broadcast to dst's shape and cast to dst's dtype. */
#define TSR_DECL_COPY(name) TSR_API int32_t tsr_##name##_(TsrTensor dst, TsrTensor src);
#define TSR_DECL_FILL(name) TSR_API int32_t tsr_##name##_(TsrTensor t, TsrScalar value);
/* dtype -1: int64 when start, end and step are ints, else float32. */
#define TSR_DECL_ARANGE(name)                                                         \
  TSR_API int32_t tsr_##name(TsrScalar start, TsrScalar end, TsrScalar step, int32_t dtype, \
                             TsrDevice device, TsrTensor* out);
/* ndims 0: over every dim. argmax/argmin take at most one dim; var/std use correction 1
 * (tsr_call with attrs.correction for others). */
#define TSR_DECL_REDUCE(name)                                                        \
  TSR_API int32_t tsr_##name(TsrTensor x, const int64_t* dims, int32_t ndims, int32_t keepdim, \
                             TsrTensor* out);
#define TSR_DECL_SOFTMAX(name) TSR_API int32_t tsr_##name(TsrTensor x, int64_t dim, TsrTensor* out);
#define TSR_DECL_MATMUL(name) TSR_API int32_t tsr_##name(TsrTensor a, TsrTensor b, TsrTensor* out);
/* uniform_(t, low, high), normal_(t, mean, std), bernoulli_(t, p, unused). */
#define TSR_DECL_RANDOM(name) \
  TSR_API int32_t tsr_##name##_(TsrTensor t, TsrScalar p0, TsrScalar p1);
#define TSR_DECL_VIEW(name) /* declared above by hand */
/* CONV, POOL, OPTIM, NN, INDEX, SAMPLE, FOREACH and COMPOSITE ops take their arguments in
 * attrs: call them through tsr_call (several outputs and inputs as ops.def lists). */
#define TSR_DECL_CONV(name)
#define TSR_DECL_POOL(name)
#define TSR_DECL_OPTIM(name)
#define TSR_DECL_NN(name)
#define TSR_DECL_INDEX(name)
#define TSR_DECL_SAMPLE(name)
#define TSR_DECL_FOREACH(name)
#define TSR_DECL_COMPOSITE(name)
#define TSR_OP(name, kind, types, diff) TSR_DECL_##kind(name)
#include "tessera/ops.def"
#undef TSR_OP

/* ---- autograd (DESIGN §4; ABI 1.1) ----------------------------------------------------
 *
 * A graph is recorded only while grad mode is on (per thread, default on) and some input of
 * an op requires grad. Every op, typed entry point, view, tsr_to, tsr_contiguous, tsr_clone
 * and tsr_copy_ records; factories and non-differentiable ops do not. Grads are accumulated
 * into leaves (tensors that require grad and were not made by a recorded op). A tensor saved
 * for backward and then changed in place makes backward fail naming the op. In-place ops on
 * a leaf that requires grad fail while grad mode is on; out= with inputs that require grad
 * fails. No process-wide lock: independent graphs may run backward on different threads. */

/* requires_grad_(): only leaves can have it turned off. */
TSR_API int32_t tsr_set_requires_grad(TsrTensor t, int32_t requires_grad);
TSR_API int32_t tsr_requires_grad(TsrTensor t, int32_t* out);
TSR_API int32_t tsr_is_leaf(TsrTensor t, int32_t* out);
/* The accumulated .grad (owned by the caller), or *out = NULL when there is none. */
TSR_API int32_t tsr_grad(TsrTensor t, TsrTensor* out);
/* Replaces .grad (NULL clears it); its shape, dtype and device must be t's. */
TSR_API int32_t tsr_set_grad(TsrTensor t, TsrTensor grad);
/* retain_grad(): a non-leaf keeps its .grad after backward (no-op for leaves). */
TSR_API int32_t tsr_retain_grad(TsrTensor t);
/* A tensor sharing t's storage (and version counter) with no history, requires_grad 0. */
TSR_API int32_t tsr_detach(TsrTensor t, TsrTensor* out);
/* The name of the node that made t ("mul_backward"), or *name = NULL for leaves and
 * tensors without history. The string is static. */
TSR_API int32_t tsr_grad_fn_name(TsrTensor t, const char** name);
/* Backpropagates from roots[i] seeded with grads[i]; grads == NULL or grads[i] == NULL seeds
 * a one-element root with 1 (any other root needs an explicit gradient). Accumulates into
 * the .grad of the leaves reached (and of non-leaves with retain_grad). retain_graph 0 frees
 * the graph's saved tensors: a second backward through it fails naming the op. */
TSR_API int32_t tsr_backward(const TsrTensor* roots, const TsrTensor* grads, int32_t num_roots,
                             int32_t retain_graph);
/* torch.autograd.grad: the gradients of the roots w.r.t. inputs[i], returned in outputs[i]
 * (owned) instead of accumulated into .grad; an input the roots do not depend on is an
 * error unless allow_unused (then outputs[i] = NULL). */
TSR_API int32_t tsr_autograd_grad(const TsrTensor* roots, const TsrTensor* grads, int32_t num_roots,
                                  const TsrTensor* inputs, int32_t num_inputs, int32_t retain_graph,
                                  int32_t allow_unused, TsrTensor* outputs);
/* Grad mode of the calling thread (no_grad scopes). Returns the previous mode (0/1);
 * cannot fail. */
TSR_API int32_t tsr_set_grad_enabled(int32_t enabled);
TSR_API int32_t tsr_is_grad_enabled(void);

/* ---- streams, events, memory, graphs (ABI 1.2) ------------------------------------------
 *
 * For devices whose plugin provides them (CUDA); elsewhere each call fails with
 * TSR_ERR_NOT_IMPLEMENTED naming the device. Handles are opaque; stream NULL is the device's
 * default stream. Ops run on the calling thread's current stream of their device. A tensor's
 * memory is kept from reuse until every stream that used it has finished with it (the
 * runtime records the use the first time a tensor meets a stream other than its own). */
typedef void* TsrStream;
typedef void* TsrEvent;
typedef void* TsrGraph;

TSR_API int32_t tsr_stream_create(TsrDevice device, int32_t priority, TsrStream* out);
TSR_API int32_t tsr_stream_destroy(TsrDevice device, TsrStream stream);
TSR_API int32_t tsr_stream_synchronize(TsrDevice device, TsrStream stream);
/* *idle = 1 when all work enqueued on the stream has finished. */
TSR_API int32_t tsr_stream_query(TsrDevice device, TsrStream stream, int32_t* idle);
TSR_API int32_t tsr_stream_wait_event(TsrDevice device, TsrStream stream, TsrEvent event);
/* The calling thread's current stream on `device` (NULL: the default stream). */
TSR_API int32_t tsr_set_current_stream(TsrDevice device, TsrStream stream);
TSR_API int32_t tsr_current_stream(TsrDevice device, TsrStream* out);
TSR_API int32_t tsr_event_create(TsrDevice device, int32_t enable_timing, TsrEvent* out);
TSR_API int32_t tsr_event_destroy(TsrDevice device, TsrEvent event);
TSR_API int32_t tsr_event_record(TsrDevice device, TsrEvent event, TsrStream stream);
TSR_API int32_t tsr_event_synchronize(TsrDevice device, TsrEvent event);
TSR_API int32_t tsr_event_query(TsrDevice device, TsrEvent event, int32_t* done);
TSR_API int32_t tsr_event_elapsed_time(TsrDevice device, TsrEvent start, TsrEvent end, float* ms);
/* t's memory is also used on `stream` (explicit form of what the runtime records itself). */
TSR_API int32_t tsr_record_stream(TsrTensor t, TsrStream stream);

/* Allocator statistics; set stats->struct_size = sizeof(TsrMemoryStats) first. */
TSR_API int32_t tsr_memory_stats(TsrDevice device, TsrMemoryStats* stats);
TSR_API int32_t tsr_reset_peak_memory_stats(TsrDevice device);
/* Gives cached, unused device memory back to the device. */
TSR_API int32_t tsr_empty_cache(TsrDevice device);
/* Caps the memory the allocator may reserve at fraction (0, 1] of the device's memory. */
TSR_API int32_t tsr_set_memory_fraction(TsrDevice device, double fraction);
/* The allocator's segments and blocks as JSON; valid until the next call on this thread. */
TSR_API int32_t tsr_memory_snapshot(TsrDevice device, const char** json);

/* CUDA graphs: ops enqueued on `stream` between begin and end are recorded, not run (no
 * host synchronization, no copies to the host, no random ops meanwhile); their outputs live
 * in a pool private to the graph. Replay reruns the recorded kernels on the same memory:
 * refill the captured inputs in place, replay, read the captured outputs. */
TSR_API int32_t tsr_graph_capture_begin(TsrDevice device, TsrStream stream);
TSR_API int32_t tsr_graph_capture_end(TsrDevice device, TsrStream stream, TsrGraph* out);
TSR_API int32_t tsr_graph_replay(TsrDevice device, TsrGraph graph, TsrStream stream);
TSR_API int32_t tsr_graph_destroy(TsrDevice device, TsrGraph graph);

/* Device-type switches by name, e.g. ("cuda", "allow_tf32", 1) as torch's
 * backends.cuda.matmul.allow_tf32. */
TSR_API int32_t tsr_device_set_option(const char* device_type, const char* key, int64_t value);
TSR_API int32_t tsr_device_get_option(const char* device_type, const char* key, int64_t* value);

TSR_STATIC_ASSERT(sizeof(TsrTensorInfo) == 184, "TsrTensorInfo size is part of the ABI");

#ifdef __cplusplus
}
#endif
#endif /* TESSERA_TESSERA_H */
