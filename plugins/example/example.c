/* The smallest real Tessera plugin: a device type "example" backed by host memory and one
 * kernel, add for float32. A model for plugin authors; see README.md beside it.
 *
 * The whole contract is tessera/plugin.h: include it (never anything from runtime/), export
 * tsr_plugin_entry and nothing else (plugin.map), register devices and kernels in init. */
#include <stdlib.h>
#include <string.h>

#include "tessera/plugin.h"

/* The host's function table, kept so kernels can report errors (host->set_error). */
static const TsrHostApi* g_host;

/* ---- the device: where tensors on "example:N" live ------------------------------------ */

/* Allocate nbytes aligned to 64 (the runtime asks for at least that). nbytes may be 0. */
static int32_t example_allocate(void* ctx, int32_t device_index, size_t nbytes, void** out_ptr) {
  (void)ctx;
  (void)device_index;
  size_t rounded = (nbytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
  *out_ptr = aligned_alloc(64, rounded > 0 ? rounded : 64);
  if (*out_ptr == NULL) return g_host->set_error(TSR_ERR_OUT_OF_MEMORY, "[example] out of memory");
  return TSR_OK;
}

static void example_free(void* ctx, int32_t device_index, void* ptr, size_t nbytes) {
  (void)ctx;
  (void)device_index;
  (void)nbytes;
  free(ptr);
}

/* Contiguous bytes between this device and the host. Both are host memory here; a real
 * accelerator would pick host-to-device, device-to-host or device-to-device copies. */
static int32_t example_copy(void* ctx, void* dst, TsrDevice dst_device, const void* src, TsrDevice src_device,
                            size_t nbytes, void* stream) {
  (void)ctx;
  (void)dst_device;
  (void)src_device;
  (void)stream;
  memcpy(dst, src, nbytes);
  return TSR_OK;
}

/* Nothing is asynchronous here. */
static int32_t example_synchronize(void* ctx, int32_t device_index) {
  (void)ctx;
  (void)device_index;
  return TSR_OK;
}

/* ---- the kernel: out = a + alpha * b ---------------------------------------------------- */

/* Element i's offset in a tensor: walk the row-major index backwards through the sizes. */
static int64_t offset_of(int64_t i, const TsrTensorDesc* t) {
  int64_t offset = 0;
  for (int32_t d = t->ndim - 1; d >= 0; --d) {
    offset += (i % t->sizes[d]) * t->strides[d];
    i /= t->sizes[d];
  }
  return offset;
}

/* The runtime already broadcast the inputs to the output's sizes (stride 0 where
 * broadcast) and converted them to float32, so the kernel only computes. A scalar operand
 * is not an input: it is in attrs->scalar at position attrs->scalar_arg (0 = a, 1 = b). */
static int32_t example_add(const TsrKernelArgs* args) {
  const TsrAttrs* attrs = args->attrs;
  const TsrTensorDesc* out = &args->outputs[0];
  if (out->dtype != TSR_FLOAT32) /* registered for float32 only: never happens */
    return g_host->set_error(TSR_ERR_TYPE, "[example] add: only float32 is supported");
  const float alpha = (float)attrs->alpha.v.f; /* float dtypes: scalars arrive in v.f */
  const float scalar = (float)attrs->scalar.v.f;
  const TsrTensorDesc* a = attrs->scalar_arg == 0 ? NULL : &args->inputs[0];
  const TsrTensorDesc* b = attrs->scalar_arg == 1 ? NULL : &args->inputs[attrs->scalar_arg == 0 ? 0 : 1];

  int64_t numel = 1; /* out is (sizes...), never empty */
  for (int32_t d = 0; d < out->ndim; ++d) numel *= out->sizes[d];
  for (int64_t i = 0; i < numel; ++i) {
    float x = a ? ((const float*)a->data)[offset_of(i, a)] : scalar;
    float y = b ? ((const float*)b->data)[offset_of(i, b)] : scalar;
    ((float*)out->data)[offset_of(i, out)] = x + alpha * y; /* out may alias a or b exactly */
  }
  return TSR_OK;
}

/* ---- registration ------------------------------------------------------------------------ */

static int32_t example_init(const TsrHostApi* host, void** plugin_ctx) {
  g_host = host;
  *plugin_ctx = NULL; /* no state to hand back to shutdown */

  /* Options come from this plugin's "options" object in the JSON config. */
  int64_t count = host->option_int(host->host_ctx, "device_count", 1);
  if (count < 1 || count > 16)
    return host->set_error(TSR_ERR_INVALID_ARGUMENT, "[example] option device_count must be 1..16");

  TsrDeviceInterface device = {0};
  device.struct_size = sizeof device; /* every struct says its size: the ABI can grow */
  device.type_name = "example";
  device.device_count = (int32_t)count;
  device.allocate = example_allocate;
  device.free = example_free;
  device.copy = example_copy;
  device.synchronize = example_synchronize;
  int32_t status = host->register_device(host->host_ctx, &device); /* the runtime copies it */
  if (status != TSR_OK) return status;                             /* the host already set the message */

  TsrKernelDef add = {0};
  add.struct_size = sizeof add;
  add.op_name = "add"; /* a name from ops.def */
  add.device_type = "example";
  add.dtype_mask = TSR_DTYPE_BIT(TSR_FLOAT32);
  add.fn = example_add;
  status = host->register_kernel(host->host_ctx, &add);
  if (status != TSR_OK) return status; /* returning an error drops everything registered */

  host->log(TSR_LOG_DEBUG, "[example] registered device 'example' and kernel add");
  return TSR_OK;
}

static void example_shutdown(void* plugin_ctx) {
  (void)plugin_ctx;
}

/* The one exported symbol: static data describing the plugin. */
TSR_PLUGIN_EXPORT const TsrPlugin* tsr_plugin_entry(void) {
  static const TsrPlugin plugin = {
      sizeof(TsrPlugin), TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR, "example",
      "0.1.0",           example_init,         example_shutdown,
  };
  return &plugin;
}
