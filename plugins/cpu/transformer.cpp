// Transformer kernels of the CPU plugin (ABI 1.3, ops.def kinds NN, INDEX, SAMPLE, FOREACH).
// STUB: being written; every kernel fails with "not implemented".
#include "cpu.h"

namespace tessera_cpu {
namespace {
void not_yet(const TsrKernelArgs* a) { raise_error(TSR_ERR_NOT_IMPLEMENTED, "[%s] not implemented on cpu yet", a->op_name); }
}  // namespace

int32_t kernel_layer_norm(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_layer_norm_backward(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_scaled_dot_product_attention(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_scaled_dot_product_attention_backward(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_cross_entropy(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_cross_entropy_backward(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_index_select(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_index_select_backward(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_gather(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_gather_backward(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_triu(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_tril(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_topk(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_dropout(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_multinomial(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_grad_norm(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }
int32_t kernel_clip_grad_scale(const TsrKernelArgs* a) { return run_kernel(a, &not_yet); }

}  // namespace tessera_cpu
