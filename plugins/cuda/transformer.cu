// Transformer kernels of the CUDA plugin (ABI 1.3): layer norm, cross entropy, indexing, dropout, sampling, foreach norms.
// STUB: being written; every kernel fails with "not implemented".
#include "cuda_common.cuh"

namespace tcu {

int32_t kernel_layer_norm(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_layer_norm_backward(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_cross_entropy(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_cross_entropy_backward(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_index_select(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_index_select_backward(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_gather(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_gather_backward(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_triu(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_tril(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_topk(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_dropout(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_multinomial(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_grad_norm(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }
int32_t kernel_clip_grad_scale(const TsrKernelArgs* a) { return fail(a, TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cuda yet", a->op_name); }

}  // namespace tcu
