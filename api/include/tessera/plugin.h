/* The stable C ABI between the Tessera runtime and its backend plugins.
 *
 * A plugin is a shared library that includes only this header (plus its own vendor
 * headers), never links libtessera.so, and exports exactly one symbol:
 *
 *     TSR_PLUGIN_EXPORT const TsrPlugin* tsr_plugin_entry(void);
 *
 * The runtime dlopens it (RTLD_NOW | RTLD_LOCAL), calls tsr_plugin_entry, refuses it
 * unless abi_major == TSR_PLUGIN_ABI_MAJOR and abi_minor <= the runtime's minor, then
 * calls init() with the host's function table. During init the plugin registers its
 * devices and kernels through that table. If init fails, everything it registered is
 * dropped. Every struct crossing the boundary begins with struct_size; members are only
 * ever appended. C99. */
#ifndef TESSERA_PLUGIN_H
#define TESSERA_PLUGIN_H

#include "tessera/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TSR_PLUGIN_ABI_MAJOR 1
#define TSR_PLUGIN_ABI_MINOR 3 /* 1.1: CONV, POOL, OPTIM kinds; TsrAttrs 528 bytes.
                                  1.2: streams, events, allocator control, graphs
                                  1.3: NN, INDEX, SAMPLE, FOREACH kinds (several outputs,
                                       any number of inputs) */
#define TSR_PLUGIN_ENTRY_SYMBOL "tsr_plugin_entry"

#if defined(_WIN32)
#define TSR_PLUGIN_EXPORT __declspec(dllexport)
#else
#define TSR_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Log levels for TsrHostApi.log. */
typedef enum TsrLogLevel {
  TSR_LOG_TRACE = 0,
  TSR_LOG_DEBUG = 1,
  TSR_LOG_INFO = 2,
  TSR_LOG_WARN = 3,
  TSR_LOG_ERROR = 4
} TsrLogLevel;

/* A validated tensor as a kernel sees it. `data` already points at the first element
 * (storage base + storage offset). Strides are in elements and may be 0 (broadcast) or
 * anything else a view produces; they are never negative. ndim == 0 is a scalar. */
typedef struct TsrTensorDesc {
  uint32_t struct_size;
  int32_t dtype; /* TsrDType */
  void* data;
  int32_t ndim;
  TsrDevice device;
  int32_t reserved;
  int64_t sizes[TSR_MAX_DIMS];
  int64_t strides[TSR_MAX_DIMS];
} TsrTensorDesc;

/* One kernel call. Kernels are never called with an empty input or output (numel 0);
 * the runtime handles those. What the runtime guarantees per op kind (see ops.def):
 *  UNARY/BINARY/COMPARE/WHERE/CLAMP/COPY: every input has exactly the output's sizes
 *    (broadcast inputs arrive with stride 0). UNARY, BINARY and CLAMP inputs already have
 *    the output's dtype; COMPARE inputs share one dtype and the output is bool; WHERE's
 *    cond is bool and its a/b have the output's dtype; COPY converts any dtype to any.
 *    A scalar operand is not an input: `inputs` omits it and it sits in attrs->scalar at
 *    operand position attrs->scalar_arg (BINARY/COMPARE: 0 = first operand, 1 = second;
 *    WHERE: 1 = a, 2 = b). Scalars (scalar, scalar2, scalar3, alpha) arrive converted to
 *    the compute dtype: in v.f (kind FLOAT) for floating dtypes, in v.i (kind INT) for
 *    integer and bool dtypes. UNARY gelu reads attrs->approximate; add/sub read alpha;
 *    CLAMP reads scalar (min) if has_scalar and scalar2 (max) if has_scalar2.
 *    Outputs may be non-contiguous (in-place and out= calls) and may alias an input
 *    exactly (same data and strides), never partially.
 *  FILL: outputs[0] = attrs->scalar. ARANGE: outputs[0] is 1-D contiguous,
 *    out[i] = scalar + i * scalar3 (start, step).
 *  REDUCE: attrs->dims lists the reduced dims (non-negative, sorted, never empty: "all"
 *    lists every dim); outputs[0] has the input's ndim with size 1 on those dims
 *    (keepdim form). dtype_mask is about the input dtype. Output dtype: int64 for argmax/
 *    argmin and for sum/prod of bool/uint8/int32/int64; otherwise the input's (float16 and
 *    bfloat16 accumulate in float32). var/std read attrs->correction. argmax/argmin over
 *    several dims index the row-major flattening of those dims; ties give the first.
 *  SOFTMAX: attrs->dim is non-negative; input and output share sizes and dtype.
 *  MATMUL: inputs are (..., M, K) and (..., K, N) with equal batch sizes (broadcast batch
 *    strides are 0); outputs[0] is (..., M, N) and contiguous; all three share one dtype.
 *  RANDOM: fills outputs[0] (any strides; any dtype for bernoulli, float for the others)
 *    from Philox4x32-10 with key (lo32(seed), hi32(seed)) and counter (lo32(n), hi32(n),
 *    0, 0). uniform (scalar = low, scalar2 = high) and bernoulli (scalar = p; writes 1
 *    where u < p) use one 32-bit lane per element:
 *    element i (row-major) takes n = offset + i/4, lane i%4, u = (x + 0.5) * 2^-32.
 *    normal (scalar = mean, scalar2 = std) uses two lanes per element: n = offset + i/2,
 *    lanes 2*(i%2) and 2*(i%2)+1 as u1, u2, z = sqrt(-2 ln u1) * cos(2 pi u2). The
 *    runtime advances its offset past the counters used, so results do not depend on how
 *    the kernel splits the work across threads. RANDOM's scalars are probabilities and
 *    moments, so they are not converted to the output dtype: read them by their kind.
 *  CONV and POOL: every operand is contiguous, of the output's dtype (float16, bfloat16,
 *    float32 or float64) and 4-D NCHW (a 3-D unbatched tensor arrives as N = 1), but conv2d's
 *    bias, 1-D [O]. attrs hold checked values with the defaults applied: stride2, dilation
 *    and groups >= 1, padding >= 0; POOL: kernel >= 1, padding <= kernel / 2, ceil_mode 0/1.
 *    The output's sizes follow ops.def's formulas (a pooling window o starts at o * stride -
 *    padding; ceil_mode only decided how many there are). Kernels overwrite their output:
 *      conv2d: x [N,C,H,W], w [O,C/groups,kh,kw] [, bias [O]] -> [N,O,Ho,Wo]
 *      conv2d_backward_input: grad [N,O,Ho,Wo], w -> [N,C,H,W]
 *      conv2d_backward_weight: grad [N,O,Ho,Wo], x -> [O,C/groups,kh,kw] (summed over N)
 *      max_pool2d: x -> [N,C,Ho,Wo]; padding never wins; a NaN is its window's maximum.
 *      max_pool2d_backward: grad [N,C,Ho,Wo], x -> [N,C,H,W]: each window adds its gradient
 *        at its maximum: the first in row-major window order, or its last NaN (as PyTorch).
 *  OPTIM: outputs[0] is the parameter, inputs the gradient and then the states, all
 *    contiguous with one sizes and dtype (float16/bfloat16/float32 compute in float32,
 *    float64 in float64). The kernel writes the parameter and the states in place in one
 *    pass; the runtime has checked attrs->hp (ops.def) and bumps the version counters.
 *    sgd_step gets a momentum buffer exactly when momentum != 0; buffer_is_new = 1 means
 *    buf = grad (after weight decay and maximize), ignoring its old contents. adam_step:
 *    step >= 1, bias corrections 1 - beta^step. With num_inputs == 4, inputs[3] is the step
 *    (capturable Adam), outside the rule above: one float32 element (any sizes/strides; read
 *    *data) on the parameter's device, >= 1 (unchecked: it lives on the device), used instead
 *    of hp[5], which is then neither checked nor meaningful. It is read only. A device kernel
 *    reads it on the device (no host read, no sync), so the update can be captured in a graph
 *    and replayed with the step advanced in place between replays.
 *  NN, INDEX, SAMPLE, FOREACH (1.3): the signatures, shapes and rules are in ops.def. The
 *    runtime allocates every output (contiguous, fresh, never aliasing an input) but
 *    clip_grad_scale's (given, contiguous, written in place); num_outputs may exceed 1
 *    (layer_norm: y, mean, rstd) and num_inputs 3 (attention's backward takes 6; FOREACH any
 *    number). Operands arrive contiguous but attention's q/k/v (stride 1 on the last dim)
 *    and with the ranks ops.def gives (layer_norm [R,C], attention 4-D, cross_entropy
 *    [N,C]); dims are non-negative; index tensors are int64. SAMPLE ops and attention with
 *    dropout read attrs->seed/offset like RANDOM; the runtime advances the generator past
 *    ceil(elements / 4) counters (attention: B*H*T*S elements; multinomial R*num_samples).
 * Outputs come first. `stream` is the device's current stream (NULL = default). */
typedef struct TsrKernelArgs {
  uint32_t struct_size;
  int32_t op; /* runtime op id, for messages */
  const char* op_name;
  int32_t num_outputs;
  int32_t num_inputs;
  TsrTensorDesc* outputs;
  const TsrTensorDesc* inputs;
  const TsrAttrs* attrs;
  void* stream;
  void* kernel_ctx; /* TsrKernelDef.ctx */
} TsrKernelArgs;

/* Returns TSR_OK or an error status after calling host->set_error with a message. */
typedef int32_t (*TsrKernelFn)(const TsrKernelArgs* args);

/* A kernel for one (op, device type). dtype_mask says which compute dtypes it handles
 * (the output dtype for most ops; the input dtype for COMPARE, REDUCE arg*, COPY's source
 * and destination both). The runtime reports what a plugin lacks from these masks. */
typedef struct TsrKernelDef {
  uint32_t struct_size;
  const char* op_name;     /* a name from ops.def */
  const char* device_type; /* a device type this plugin registered, e.g. "cpu" */
  uint32_t dtype_mask;     /* TSR_DTYPE_BIT(...) | ... */
  TsrKernelFn fn;
  void* ctx; /* handed back as TsrKernelArgs.kernel_ctx */
} TsrKernelDef;

/* A device type, and how the runtime allocates, frees and copies its memory. */
typedef struct TsrDeviceInterface {
  uint32_t struct_size;
  const char* type_name; /* "cpu", "cuda", ... */
  int32_t device_count;  /* ordinals 0 .. device_count-1 */
  void* ctx;
  /* Allocate nbytes (nbytes may be 0) aligned to at least 64 bytes. */
  int32_t (*allocate)(void* ctx, int32_t device_index, size_t nbytes, void** out_ptr);
  void (*free)(void* ctx, int32_t device_index, void* ptr, size_t nbytes);
  /* Copy nbytes of contiguous bytes. Each side is either this device type or the CPU
   * (host memory); the runtime stages other pairs through the host. */
  int32_t (*copy)(void* ctx, void* dst, TsrDevice dst_device, const void* src,
                  TsrDevice src_device, size_t nbytes, void* stream);
  int32_t (*synchronize)(void* ctx, int32_t device_index);

  /* ---- ABI 1.2 (the runtime reads these only when struct_size covers them; any may be
   * NULL, and the host call then says the device does not support it). Streams, events and
   * graphs are opaque handles owned by the plugin; stream NULL is the device's default
   * stream. Every function returns TSR_OK or a status after set_error. ---- */
  int32_t (*stream_create)(void* ctx, int32_t device_index, int32_t priority, void** out);
  int32_t (*stream_destroy)(void* ctx, int32_t device_index, void* stream);
  int32_t (*stream_synchronize)(void* ctx, int32_t device_index, void* stream);
  int32_t (*stream_query)(void* ctx, int32_t device_index, void* stream, int32_t* idle);
  int32_t (*stream_wait_event)(void* ctx, int32_t device_index, void* stream, void* event);
  /* The calling thread's current stream on this device: the runtime passes it to kernels
   * (TsrKernelArgs.stream) and to copy, and allocations made by this thread are ordered
   * on it. */
  int32_t (*set_current_stream)(void* ctx, int32_t device_index, void* stream);
  int32_t (*event_create)(void* ctx, int32_t device_index, int32_t enable_timing, void** out);
  int32_t (*event_destroy)(void* ctx, int32_t device_index, void* event);
  int32_t (*event_record)(void* ctx, int32_t device_index, void* event, void* stream);
  int32_t (*event_synchronize)(void* ctx, int32_t device_index, void* event);
  int32_t (*event_query)(void* ctx, int32_t device_index, void* event, int32_t* done);
  int32_t (*event_elapsed_ms)(void* ctx, int32_t device_index, void* start, void* end, float* ms);
  /* Memory `ptr` (a block from allocate) is used on `stream`, which is not the stream it was
   * allocated on: when it is freed, it is not reused before that stream's work so far is
   * done. The runtime calls it the first time a tensor's storage meets another stream. */
  int32_t (*record_stream)(void* ctx, int32_t device_index, void* ptr, void* stream);
  int32_t (*memory_stats)(void* ctx, int32_t device_index, TsrMemoryStats* out);
  int32_t (*reset_peak_stats)(void* ctx, int32_t device_index);
  int32_t (*empty_cache)(void* ctx, int32_t device_index);
  /* Caps what the allocator reserves at fraction * the device's memory (0 < fraction <= 1). */
  int32_t (*set_memory_fraction)(void* ctx, int32_t device_index, double fraction);
  /* A JSON description of the allocator's segments and blocks, written NUL-terminated into
   * buf when it fits; *needed gets the length + 1 either way. */
  int32_t (*memory_snapshot)(void* ctx, int32_t device_index, char* buf, size_t size, size_t* needed);
  /* Graphs: every op enqueued on `stream` between begin and end (by any thread whose
   * current stream it is) is captured, not run; allocations meanwhile come from a pool
   * private to the graph, kept until graph_destroy. replay launches it on `stream`. */
  int32_t (*graph_capture_begin)(void* ctx, int32_t device_index, void* stream);
  int32_t (*graph_capture_end)(void* ctx, int32_t device_index, void* stream, void** graph);
  int32_t (*graph_replay)(void* ctx, int32_t device_index, void* graph, void* stream);
  int32_t (*graph_destroy)(void* ctx, int32_t device_index, void* graph);
  /* Device-type-wide switches by name (e.g. "allow_tf32"); unknown keys are an error. */
  int32_t (*set_option)(void* ctx, const char* key, int64_t value);
  int32_t (*get_option)(void* ctx, const char* key, int64_t* value);
} TsrDeviceInterface;

/* The host's function table, handed to init. host_ctx identifies the plugin being
 * loaded and must be passed back unchanged. */
typedef struct TsrHostApi {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  void* host_ctx;
  int32_t (*register_device)(void* host_ctx, const TsrDeviceInterface* device);
  int32_t (*register_kernel)(void* host_ctx, const TsrKernelDef* kernel);
  /* Record the error message of the current call (thread-local); returns status. */
  int32_t (*set_error)(int32_t status, const char* message);
  void (*log)(int32_t level, const char* message);
  /* An integer option from this plugin's "options" object in the JSON config. */
  int64_t (*option_int)(void* host_ctx, const char* key, int64_t default_value);
  /* Why this plugin chose not to register anything (e.g. "no CUDA device"); shown by
   * tessera-info. The plugin still loads. */
  void (*set_unavailable)(void* host_ctx, const char* reason);
} TsrHostApi;

/* What tsr_plugin_entry returns: static data owned by the plugin. */
typedef struct TsrPlugin {
  uint32_t struct_size;
  uint32_t abi_major; /* TSR_PLUGIN_ABI_MAJOR the plugin was built against */
  uint32_t abi_minor;
  const char* name;
  const char* version;
  /* Register devices and kernels; return TSR_OK or an error status (after set_error). */
  int32_t (*init)(const TsrHostApi* host, void** plugin_ctx);
  void (*shutdown)(void* plugin_ctx);
} TsrPlugin;

typedef const TsrPlugin* (*TsrPluginEntryFn)(void);

TSR_STATIC_ASSERT(sizeof(TsrTensorDesc) == 160, "TsrTensorDesc size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrKernelArgs) == 64, "TsrKernelArgs size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrKernelDef) == 48, "TsrKernelDef size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrDeviceInterface) == 256, "TsrDeviceInterface size is part of the ABI");
#define TSR_DEVICE_INTERFACE_SIZE_1_1 64 /* a 1.0/1.1 plugin's struct_size */
TSR_STATIC_ASSERT(sizeof(TsrHostApi) == 72, "TsrHostApi size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrPlugin) == 48, "TsrPlugin size is part of the ABI");

#ifdef __cplusplus
}
#endif
#endif /* TESSERA_PLUGIN_H */
