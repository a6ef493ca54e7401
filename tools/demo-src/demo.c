/* tessera-demo: a short tour of Tessera through the host C ABI — tensors, views,
 * broadcasting, type promotion, reductions and matmul on whatever devices the config loads. */
#include <stdio.h>
#include <stdlib.h>

#include "tessera/tessera.h"

/* Stops the demo with the runtime's message when a call fails. */
#define CHECK(call)                                                           \
  do {                                                                        \
    int32_t st_ = (call);                                                     \
    if (st_ != TSR_OK) {                                                      \
      fprintf(stderr, "tessera-demo: %s failed: %s\n", #call, tsr_last_error()); \
      exit(1);                                                                \
    }                                                                         \
  } while (0)

/* Prints a tensor of up to 2 dims as float64 values, with its shape and dtype. */
static void show(const char* label, TsrTensor t) {
  TsrTensorInfo info;
  info.struct_size = sizeof info;
  CHECK(tsr_tensor_info(t, &info));
  TsrTensor f64 = NULL;
  TsrDevice cpu = {TSR_DEVICE_CPU, 0};
  CHECK(tsr_to(t, cpu, TSR_FLOAT64, &f64));
  double* v = malloc(sizeof(double) * (size_t)(info.numel ? info.numel : 1));
  CHECK(tsr_copy_to_host(f64, v, sizeof(double) * (size_t)info.numel));
  printf("%s: shape [", label);
  for (int d = 0; d < info.ndim; d++) printf(d ? ", %lld" : "%lld", (long long)info.sizes[d]);
  printf("] %s\n", tsr_dtype_name(info.dtype));
  int64_t cols = info.ndim == 0 ? 1 : info.sizes[info.ndim - 1];
  for (int64_t i = 0; i < info.numel; i++)
    printf(i % cols == 0 ? "  %8.4g" : " %8.4g%s", v[i], (i + 1) % cols == 0 ? "\n" : "");
  if (info.numel % cols || info.ndim == 0) printf("\n");
  free(v);
  tsr_release(f64);
}

int main(void) {
  CHECK(tsr_init(NULL));
  const char* json = NULL;
  CHECK(tsr_info_json(&json));
  printf("Tessera runtime ABI %d.%d\n\n", TSR_ABI_MAJOR, TSR_ABI_MINOR);

  TsrDevice cpu = {TSR_DEVICE_CPU, 0};
  /* A 2x3 matrix from host data, and a 3-vector. */
  float a_data[] = {1, 2, 3, 4, 5, 6};
  float b_data[] = {10, 20, 30};
  int64_t a_shape[] = {2, 3}, b_shape[] = {3};
  TsrTensor a, b, c, at, prod, s, m, sm, x;
  CHECK(tsr_from_buffer(a_data, a_shape, 2, TSR_FLOAT32, cpu, &a));
  CHECK(tsr_from_buffer(b_data, b_shape, 1, TSR_FLOAT32, cpu, &b));
  show("a", a);
  show("b", b);

  /* Broadcasting: [2,3] + [3] -> [2,3]. */
  CHECK(tsr_add(a, b, &c));
  show("a + b (broadcast)", c);

  /* A view: the transpose shares a's storage; no copy. */
  CHECK(tsr_t(a, &at));
  show("a.t() (a view)", at);

  /* Matmul: [2,3] @ [3,2] -> [2,2]. */
  CHECK(tsr_matmul(a, at, &prod));
  show("a @ a.t()", prod);

  /* Reductions and softmax. */
  int64_t dim1[] = {1};
  CHECK(tsr_sum(a, dim1, 1, 0, &s));
  show("a.sum(dim=1)", s);
  CHECK(tsr_mean(a, NULL, 0, 0, &m));
  show("a.mean()", m);
  CHECK(tsr_softmax(a, -1, &sm));
  show("softmax(a, dim=-1)", sm);

  /* Type promotion as in PyTorch: int64 arange * 0.5 -> float32. */
  CHECK(tsr_arange(tsr_scalar_int(0), tsr_scalar_int(6), tsr_scalar_int(1), -1, cpu, &x));
  show("arange(6)", x);
  TsrTensor half;
  CHECK(tsr_mul_scalar(x, tsr_scalar_float(0.5), &half));
  show("arange(6) * 0.5", half);

  /* Bad input is an error with a message, never a crash. */
  TsrTensor bad = NULL;
  if (tsr_matmul(a, a, &bad) != TSR_OK) printf("a @ a -> error: %s\n", tsr_last_error());

  TsrTensor all[] = {a, b, c, at, prod, s, m, sm, x, half};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tsr_release(all[i]);
  CHECK(tsr_shutdown());
  return 0;
}
