// Fused scaled-dot-product attention of the CUDA plugin (ABI 1.3): flash-style forward and backward.
// STUB: being written; every kernel fails with "not implemented".
#include "cuda_common.cuh"

namespace tcu {

int32_t kernel_scaled_dot_product_attention(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_scaled_dot_product_attention_backward(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }

}  // namespace tcu
