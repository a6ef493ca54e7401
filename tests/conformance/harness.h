// Device-side plumbing of the conformance suite: the op table as the suite sees it (from
// ops.def), owned tensor handles, uploading host values in a chosen memory layout, reading
// results back, and the per-cell record (op x dtype x device) of ok / unsupported / FAIL
// with messages naming op, dtype, device, shapes and the worst element.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "numerics.h"

namespace conf {

enum class Kind { UNARY, BINARY, COMPARE, WHERE, CLAMP, COPY, FILL, ARANGE, REDUCE, SOFTMAX, MATMUL, RANDOM, VIEW, CONV, POOL, OPTIM, NN, INDEX, SAMPLE, FOREACH, COMPOSITE };
enum class Types { ANY, NUM, FLOAT, NONE };

// The typed entry points tessera.h generates for an op, by kind (VIEW ops are called by name).
struct TypedFns {
  int32_t (*unary)(TsrTensor, TsrTensor*) = nullptr;
  int32_t (*binary)(TsrTensor, TsrTensor, TsrTensor*) = nullptr;
  int32_t (*binary_scalar)(TsrTensor, TsrScalar, TsrTensor*) = nullptr;
  int32_t (*where)(TsrTensor, TsrTensor, TsrTensor, TsrTensor*) = nullptr;
  int32_t (*clamp)(TsrTensor, const TsrScalar*, const TsrScalar*, TsrTensor*) = nullptr;
  int32_t (*copy)(TsrTensor, TsrTensor) = nullptr;
  int32_t (*fill)(TsrTensor, TsrScalar) = nullptr;
  int32_t (*arange)(TsrScalar, TsrScalar, TsrScalar, int32_t, TsrDevice, TsrTensor*) = nullptr;
  int32_t (*reduce)(TsrTensor, const int64_t*, int32_t, int32_t, TsrTensor*) = nullptr;
  int32_t (*softmax)(TsrTensor, int64_t, TsrTensor*) = nullptr;
  int32_t (*matmul)(TsrTensor, TsrTensor, TsrTensor*) = nullptr;
  int32_t (*random)(TsrTensor, TsrScalar, TsrScalar) = nullptr;
};

struct OpEntry {
  const char* name;
  int32_t id;  // position in ops.def
  Kind kind;
  Types types;
  TypedFns fns;
};

// An owned TsrTensor (released on destruction).
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(TsrTensor t) : t_(t) {}
  Tensor(Tensor&& o) noexcept : t_(o.t_) { o.t_ = nullptr; }
  Tensor& operator=(Tensor&& o) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  ~Tensor() { tsr_release(t_); }
  TsrTensor get() const { return t_; }
  TsrTensor* out();  // releases the current tensor; for out-parameters
  explicit operator bool() const { return t_ != nullptr; }

 private:
  TsrTensor t_ = nullptr;
};

// How an input is laid out in memory; its logical values are the same in each.
enum class Layout {
  Contiguous,
  Transposed,  // every dim reversed: a permute() view of a reversed-shape base
  Strided,     // every other element of the last dim: a slice(step 2) view
};

// An input's sizes and layout.
struct Input {
  Shape sizes;
  Layout layout;
};

// A preallocated non-contiguous output: every other element of the last dim of a larger
// tensor whose gaps hold a sentinel, so a kernel writing outside the view is caught.
struct StridedOut {
  Tensor base, view;
  HostTensor base_host;
  uint64_t version = 0;  // the view's version before the call
};

// What happened in one cell of the summary table.
struct CellResult {
  bool ran = false;
  int ok = 0, unsupported = 0, failed = 0;
  std::vector<std::string> unsupported_variants;
};

// The checks of one op on one dtype and one device.
class Ctx {
 public:
  Ctx(const OpEntry& op, int32_t dtype, TsrDevice device, CellResult& result);

  const OpEntry& op;
  const int32_t dtype;
  const TsrDevice device;
  Rng rng;

  // OK: true. TSR_ERR_NOT_IMPLEMENTED: reported as unsupported, false. Else a failure.
  bool ran(int32_t status, const std::string& variant);
  // The call must fail (any status but OK); NOT_IMPLEMENTED counts as unsupported.
  void expect_error(int32_t status, const std::string& variant, int32_t wanted = -1);
  void fail(const std::string& variant, const std::string& message);
  void pass() { ++result_.ok; }

  // Float tolerance relative to max(|expected|, 1); 0 (exact) for ints and bool. k widens
  // it for float32/float64 (sums of many terms); the low-precision ones are bounded by
  // their own rounding of the output.
  static double tol(int32_t dtype, double k = 1);

  Tensor upload(const HostTensor& host, Layout layout = Layout::Contiguous);
  Tensor upload_scalar(int32_t dtype, double value);  // a 0-dim tensor
  std::optional<HostTensor> download(TsrTensor t, const std::string& variant);
  // Compares t (dtype, sizes, device, every element) against `expected`, computed in
  // float64 and rounded here to `want_dtype`. Records ok or a failure; true when ok.
  bool check(const std::string& variant, TsrTensor t, int32_t want_dtype, const Shape& sizes,
             const std::vector<double>& expected, double tol);

  StridedOut strided_out(int32_t dtype, const Shape& sizes);
  // After a call into `out`: its view holds `expected`, the gaps the sentinel, the version moved.
  void check_strided_out(const std::string& variant, const StridedOut& out,
                         const std::vector<double>& expected, double tol);

  std::string where() const;  // "op dtype on device"

 private:
  CellResult& result_;
};

// "a[3,4] transposed" labels.
std::string label(const char* name, const Shape& sizes, Layout layout = Layout::Contiguous);
TsrAttrs default_attrs();

// A conformance case: every check of one op, for one dtype on one device.
using CaseFn = void (*)(Ctx& ctx);
struct Case {
  CaseFn run;
  uint32_t dtype_mask;  // the dtypes it runs
};

// Each file of cases answers for its kinds; nullopt: the suite has no case for that op.
std::optional<Case> find_elementwise_case(const OpEntry& op);
std::optional<Case> find_reduction_case(const OpEntry& op);
std::optional<Case> find_random_case(const OpEntry& op);
std::optional<Case> find_view_case(const OpEntry& op);
std::optional<Case> find_nn_case(const OpEntry& op);
std::optional<Case> find_transformer_nn_case(const OpEntry& op);
std::optional<Case> find_transformer_index_case(const OpEntry& op);

// The dtypes an op's `types` column allows (ops.def header).
uint32_t allowed_dtypes(Types types);
// Result dtype of a UNARY/REDUCE-style op on `dtype` per its types column.
int32_t float_result(Types types, int32_t dtype);

}  // namespace conf
