/* Types shared by both stable C ABIs (tessera.h for hosts, plugin.h for plugins):
 * dtypes, devices, scalars, op attributes and status codes. C99, no dependencies. */
#ifndef TESSERA_COMMON_H
#define TESSERA_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define TSR_STATIC_ASSERT(c, m) static_assert(c, m)
extern "C" {
#else
#define TSR_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

/* Largest rank a tensor may have. */
#define TSR_MAX_DIMS 8

/* Status codes returned by every ABI function. The message is in tsr_last_error(). */
typedef enum TsrStatus {
  TSR_OK = 0,
  TSR_ERR_INVALID_ARGUMENT = 1, /* bad shape, dim, value (Python: ValueError)   */
  TSR_ERR_TYPE = 2,             /* bad dtype or operand kind (TypeError)        */
  TSR_ERR_INDEX = 3,            /* index or dim out of range (IndexError)       */
  TSR_ERR_OUT_OF_MEMORY = 4,    /* allocation failed (MemoryError)              */
  TSR_ERR_RUNTIME = 5,          /* anything else (RuntimeError)                 */
  TSR_ERR_NOT_IMPLEMENTED = 6,  /* no kernel for (op, dtype, device)            */
  TSR_ERR_NOT_INITIALIZED = 7,  /* tsr_init was not called                      */
  TSR_ERR_NULL_POINTER = 8      /* a required pointer argument was NULL         */
} TsrStatus;

/* Element types. Values are stable: append, never renumber. */
typedef enum TsrDType {
  TSR_BOOL = 0,
  TSR_UINT8 = 1,
  TSR_INT32 = 2,
  TSR_INT64 = 3,
  TSR_FLOAT16 = 4,
  TSR_BFLOAT16 = 5,
  TSR_FLOAT32 = 6,
  TSR_FLOAT64 = 7,
  TSR_NUM_DTYPES = 8
} TsrDType;

/* Bit for a dtype in a dtype mask (kernel registration). */
#define TSR_DTYPE_BIT(dt) (1u << (unsigned)(dt))
#define TSR_DTYPES_FLOAT                                                                    \
  (TSR_DTYPE_BIT(TSR_FLOAT16) | TSR_DTYPE_BIT(TSR_BFLOAT16) | TSR_DTYPE_BIT(TSR_FLOAT32) | \
   TSR_DTYPE_BIT(TSR_FLOAT64))
#define TSR_DTYPES_INT \
  (TSR_DTYPE_BIT(TSR_UINT8) | TSR_DTYPE_BIT(TSR_INT32) | TSR_DTYPE_BIT(TSR_INT64))
#define TSR_DTYPES_ALL (TSR_DTYPES_FLOAT | TSR_DTYPES_INT | TSR_DTYPE_BIT(TSR_BOOL))

/* Device types. "cpu" and "cuda" are fixed; other plugins' types get ids from
 * TSR_DEVICE_FIRST_CUSTOM on, in registration order (see tsr_device_type_id). */
#define TSR_DEVICE_CPU 0
#define TSR_DEVICE_CUDA 1
#define TSR_DEVICE_FIRST_CUSTOM 2
#define TSR_MAX_DEVICE_TYPES 8

typedef struct TsrDevice {
  int32_t type;  /* TSR_DEVICE_* */
  int32_t index; /* ordinal within the type, 0 for the CPU */
} TsrDevice;

/* A Python-like scalar: bool, int or float. Its kind takes part in type promotion
 * as PyTorch's wrapped numbers do (int tensor + 2 -> int, int tensor + 2.0 -> float32). */
typedef enum TsrScalarKind { TSR_SCALAR_BOOL = 0, TSR_SCALAR_INT = 1, TSR_SCALAR_FLOAT = 2 } TsrScalarKind;

typedef struct TsrScalar {
  int32_t kind; /* TsrScalarKind */
  int32_t reserved;
  union {
    double f;  /* kind FLOAT */
    int64_t i; /* kind INT and BOOL (0 or 1) */
  } v;
} TsrScalar;

/* Attributes of an op call. One struct for every op: each op reads the fields its
 * table entry names (ops.def) and ignores the rest. Hosts fill it with
 * tsr_attrs_init() first. The runtime hands kernels a normalized copy: dims made
 * non-negative and sorted, scalars already in the dtype the kernel computes in.  */
typedef struct TsrAttrs {
  uint32_t struct_size;
  int32_t ndims;                   /* dims: reduction dims (0 = all), permutation      */
  int64_t dims[TSR_MAX_DIMS];
  int32_t nshape;                  /* shape: view/reshape/expand/as_strided sizes, or  */
  int32_t reserved0;               /*        factory shape                              */
  int64_t shape[TSR_MAX_DIMS];
  int64_t strides[TSR_MAX_DIMS];   /* as_strided strides                                */
  int64_t dim;                     /* softmax, argmax (with has_dim), select, narrow... */
  int64_t dim2;                    /* transpose's second dim, flatten's end dim         */
  int64_t start, end, step;        /* slice [start:end:step], narrow start/length(end)  */
  int64_t index;                   /* select index, as_strided storage offset           */
  int64_t correction;              /* var/std                                           */
  int32_t has_dim;                 /* argmax/argmin/squeeze: 0 = over all dims           */
  int32_t keepdim;                 /* reductions                                        */
  int32_t approximate;             /* gelu: 0 = erf form, 1 = tanh form                 */
  int32_t dtype;                   /* cast target, factory dtype; -1 = default          */
  TsrDevice device;                /* factories                                         */
  int32_t scalar_arg;              /* binary/where: which operand is attrs.scalar;      */
                                   /*   -1 none, 0 first, 1 second, 2 third              */
  int32_t has_scalar, has_scalar2; /* clamp: min given, max given                       */
  int32_t reserved1;
  TsrScalar scalar;  /* scalar operand; fill value; clamp min; arange start;            */
                     /*   uniform low; normal mean; bernoulli p                         */
  TsrScalar scalar2; /* clamp max; arange end; uniform high; normal std                 */
  TsrScalar scalar3; /* arange step                                                     */
  TsrScalar alpha;   /* add/sub: a + alpha*b (default 1)                                */
  uint64_t seed;     /* random ops: set by the runtime's generator for the kernel       */
  uint64_t offset;   /*   Philox counter offset, in units of 4 numbers                  */
  /* ---- ABI 1.1 (a host or plugin built against 1.0 sees a 384-byte struct) ---- */
  int64_t kernel[2];   /* max_pool2d window (h, w)                                       */
  int64_t stride2[2];  /* conv2d/max_pool2d stride (h, w); 0 = default (conv 1, pool the window) */
  int64_t padding[2];  /* conv2d zero padding / max_pool2d -inf padding (h, w)            */
  int64_t dilation[2]; /* conv2d/max_pool2d dilation (h, w); 0 = 1                       */
  int64_t groups;      /* conv2d groups; 0 = 1                                           */
  int32_t ceil_mode;   /* max_pool2d                                                     */
  int32_t reserved2;
  double hp[8];        /* OPTIM, NN, INDEX, SAMPLE, FOREACH: numeric parameters (ops.def) */
} TsrAttrs;

/* Memory statistics of one device's allocator (ABI 1.2): tsr_memory_stats / the plugin's
 * memory_stats. Set struct_size first; fields are only ever appended. Bytes unless noted. */
typedef struct TsrMemoryStats {
  uint32_t struct_size;
  int32_t reserved;
  int64_t allocated;       /* held by live tensors (block sizes)                     */
  int64_t reserved_bytes;  /* obtained from the device (cudaMalloc), incl. the cache  */
  int64_t peak_allocated;  /* high-water mark of allocated (since reset)              */
  int64_t peak_reserved;
  int64_t num_allocs;      /* allocation requests served                             */
  int64_t num_device_allocs; /* of which needed a new device allocation (cudaMalloc)  */
  int64_t num_ooms;        /* requests that failed with out-of-memory                */
  int64_t num_retries;     /* device allocations retried after freeing the cache     */
  int64_t limit;           /* the memory-fraction cap in bytes; 0 = none             */
  int64_t total;           /* the device's memory                                    */
} TsrMemoryStats;

TSR_STATIC_ASSERT(sizeof(TsrScalar) == 16, "TsrScalar size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrDevice) == 8, "TsrDevice size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrAttrs) == 528, "TsrAttrs size is part of the ABI");
TSR_STATIC_ASSERT(sizeof(TsrMemoryStats) == 88, "TsrMemoryStats size is part of the ABI");

#ifdef __cplusplus
}
#endif
#endif /* TESSERA_COMMON_H */
