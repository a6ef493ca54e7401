// Device-side plumbing of the conformance suite: uploads, downloads, comparisons, records.
#include "harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace conf {

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    tsr_release(t_);
    t_ = o.t_;
    o.t_ = nullptr;
  }
  return *this;
}

TsrTensor* Tensor::out() {
  tsr_release(t_);
  t_ = nullptr;
  return &t_;
}

Ctx::Ctx(const OpEntry& op, int32_t dtype, TsrDevice device, CellResult& result)
    : op(op), dtype(dtype), device(device), rng(0x7e55e4a + 1000003ull * op.id + 7919ull * dtype), result_(result) {
  result_.ran = true;
}

std::string Ctx::where() const {
  char dev[32] = "?";
  tsr_device_name(device, dev, sizeof dev);
  return std::string("[") + op.name + "] " + dtype_str(dtype) + " on " + dev;
}

void Ctx::fail(const std::string& variant, const std::string& message) {
  ++result_.failed;
  std::printf("FAIL %s, %s: %s\n", where().c_str(), variant.c_str(), message.c_str());
}

bool Ctx::ran(int32_t status, const std::string& variant) {
  if (status == TSR_OK) return true;
  if (status == TSR_ERR_NOT_IMPLEMENTED) {
    ++result_.unsupported;
    result_.unsupported_variants.push_back(variant);
    return false;
  }
  fail(variant, "status " + std::to_string(status) + ": " + tsr_last_error());
  return false;
}

void Ctx::expect_error(int32_t status, const std::string& variant, int32_t wanted) {
  if (status == TSR_OK) return fail(variant, "succeeded, expected an error");
  if (status == TSR_ERR_NOT_IMPLEMENTED) {
    ++result_.unsupported;
    result_.unsupported_variants.push_back(variant);
  } else if (wanted >= 0 && status != wanted) {
    fail(variant, "status " + std::to_string(status) + ", expected " + std::to_string(wanted) + ": " + tsr_last_error());
  } else {
    pass();
  }
}

double Ctx::tol(int32_t dtype, double k) {
  switch (dtype) {
    case TSR_FLOAT16: return 1e-3;
    case TSR_BFLOAT16: return 1e-2;
    case TSR_FLOAT32: return 1e-5 * k;
    case TSR_FLOAT64: return 1e-12 * k;
    default: return 0;
  }
}

Tensor Ctx::upload(const HostTensor& host, Layout layout) {
  const Shape& sizes = host.sizes;
  int32_t nd = static_cast<int32_t>(sizes.size());
  if (nd == 0 || (layout == Layout::Transposed && nd < 2)) layout = Layout::Contiguous;
  Shape base_sizes = sizes;
  std::vector<double> base_values = host.values;
  if (layout == Layout::Transposed) {
    std::reverse(base_sizes.begin(), base_sizes.end());
    Shape base_strides = contiguous_strides(base_sizes);
    for (int64_t flat = 0; flat < numel(sizes); ++flat) {
      Shape idx = unravel(flat, sizes);
      int64_t b = 0;
      for (int d = 0; d < nd; ++d) b += idx[d] * base_strides[nd - 1 - d];
      base_values[b] = host.values[flat];
    }
  } else if (layout == Layout::Strided) {
    int64_t last = sizes.back();
    base_sizes.back() = 2 * last + 1;
    base_values.assign(numel(base_sizes), host.values.empty() ? 0 : host.values[0]);
    for (int64_t flat = 0; flat < numel(sizes); ++flat)
      base_values[(flat / last) * (2 * last + 1) + 1 + 2 * (flat % last)] = host.values[flat];
  }
  std::vector<uint8_t> bytes = encode(host.dtype, base_values);
  bytes.reserve(1);  // a valid pointer even for 0 elements
  Tensor base;
  int32_t st = tsr_from_buffer(bytes.data(), base_sizes.data(), nd, host.dtype, device, base.out());
  if (st != TSR_OK) {
    fail("setup", "tsr_from_buffer " + shape_str(base_sizes) + " status " + std::to_string(st) + ": " + tsr_last_error());
    return Tensor();
  }
  if (layout == Layout::Contiguous) return base;
  Tensor view;
  if (layout == Layout::Transposed) {
    Shape rev(nd);
    std::iota(rev.rbegin(), rev.rend(), 0);
    st = tsr_permute(base.get(), rev.data(), nd, view.out());
  } else {
    st = tsr_slice(base.get(), nd - 1, 1, 2 * sizes.back() + 1, 2, view.out());
  }
  if (st != TSR_OK) {
    fail("setup", "view of " + shape_str(base_sizes) + " status " + std::to_string(st) + ": " + tsr_last_error());
    return Tensor();
  }
  return view;
}

Tensor Ctx::upload_scalar(int32_t dt, double value) { return upload(HostTensor{dt, {}, {value}}); }

std::optional<HostTensor> Ctx::download(TsrTensor t, const std::string& variant) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  int32_t st = tsr_tensor_info(t, &info);
  if (st != TSR_OK) {
    fail(variant, "tsr_tensor_info status " + std::to_string(st) + ": " + tsr_last_error());
    return std::nullopt;
  }
  if (info.dtype < 0 || info.dtype >= TSR_NUM_DTYPES || info.ndim < 0 || info.ndim > TSR_MAX_DIMS) {
    fail(variant, "tsr_tensor_info gave dtype " + std::to_string(info.dtype) + ", ndim " + std::to_string(info.ndim));
    return std::nullopt;
  }
  HostTensor h{info.dtype, Shape(info.sizes, info.sizes + info.ndim), {}};
  std::vector<uint8_t> bytes(numel(h.sizes) * itemsize(h.dtype));
  bytes.reserve(1);  // a valid pointer even for 0 elements
  st = tsr_copy_to_host(t, bytes.data(), bytes.size());
  if (st != TSR_OK) {
    fail(variant, "tsr_copy_to_host status " + std::to_string(st) + ": " + tsr_last_error());
    return std::nullopt;
  }
  h.values = decode(h.dtype, bytes.data(), numel(h.sizes));
  return h;
}

// Error of one element relative to max(|expected|, 1); NaN matches NaN, inf matches itself.
static double element_error(double got, double want) {
  if (std::isnan(want) || std::isnan(got)) return std::isnan(want) && std::isnan(got) ? 0 : INFINITY;
  if (std::isinf(want) || std::isinf(got)) return got == want ? 0 : INFINITY;
  return std::fabs(got - want) / std::max(std::fabs(want), 1.0);
}

static std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

bool Ctx::check(const std::string& variant, TsrTensor t, int32_t want_dtype, const Shape& sizes,
                const std::vector<double>& expected, double tol) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  if (tsr_tensor_info(t, &info) == TSR_OK && (info.device.type != device.type || info.device.index != device.index)) {
    fail(variant, "result on device type " + std::to_string(info.device.type) + ", expected the input's");
    return false;
  }
  std::optional<HostTensor> got = download(t, variant);
  if (!got) return false;
  if (got->dtype != want_dtype) {
    fail(variant, std::string("result dtype ") + dtype_str(got->dtype) + ", expected " + dtype_str(want_dtype));
    return false;
  }
  if (got->sizes != sizes) {
    fail(variant, "result shape " + shape_str(got->sizes) + ", expected " + shape_str(sizes));
    return false;
  }
  int64_t worst = -1;
  double worst_err = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    double err = element_error(got->values[i], round_to(want_dtype, expected[i]));
    if (err > tol && (worst < 0 || err > worst_err)) {
      worst = static_cast<int64_t>(i);
      worst_err = err;
    }
  }
  if (worst >= 0) {
    fail(variant, "result " + shape_str(sizes) + " " + dtype_str(want_dtype) + ", worst element " +
                      shape_str(unravel(worst, sizes)) + ": got " + num(got->values[worst]) + ", expected " +
                      num(round_to(want_dtype, expected[worst])) + " (error " + num(worst_err) + " > tol " + num(tol) + ")");
    return false;
  }
  pass();
  return true;
}

StridedOut Ctx::strided_out(int32_t dt, const Shape& sizes) {
  StridedOut out;
  Shape base_sizes = sizes;
  if (!sizes.empty()) base_sizes.back() = 2 * sizes.back() + 1;
  double sentinel = round_to(dt, 3);
  out.base_host = HostTensor{dt, base_sizes, std::vector<double>(numel(base_sizes), sentinel)};
  out.base = upload(out.base_host);
  if (!out.base) return out;
  int32_t nd = static_cast<int32_t>(sizes.size());
  int32_t st = TSR_OK;
  if (nd == 0) {  // a 0-dim output has no gaps: the base itself
    st = tsr_retain(out.base.get());
    *out.view.out() = out.base.get();
  } else {
    st = tsr_slice(out.base.get(), nd - 1, 1, 2 * sizes.back() + 1, 2, out.view.out());
  }
  if (st != TSR_OK) {
    fail("setup", "strided output view status " + std::to_string(st) + ": " + tsr_last_error());
    out.view = Tensor();
    return out;
  }
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(out.view.get(), &info);
  out.version = info.version;
  return out;
}

void Ctx::check_strided_out(const std::string& variant, const StridedOut& out, const std::vector<double>& expected,
                            double tol) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  tsr_tensor_info(out.view.get(), &info);
  if (info.version <= out.version) fail(variant, "the output's version counter did not move");
  const Shape& bs = out.base_host.sizes;
  Shape sizes = bs;
  if (!sizes.empty()) sizes.back() = (bs.back() - 1) / 2;
  if (!check(variant, out.view.get(), out.base_host.dtype, sizes, expected, tol) || bs.empty()) return;
  std::optional<HostTensor> base = download(out.base.get(), variant);
  if (!base) return;
  for (size_t i = 0; i < base->values.size(); ++i) {
    if ((i % bs.back()) % 2 != 0) continue;  // odd positions of the last dim are the view
    if (base->values[i] != out.base_host.values[i])
      return fail(variant, "wrote outside the strided output: base element " + shape_str(unravel(static_cast<int64_t>(i), bs)) +
                               " is " + num(base->values[i]) + ", was " + num(out.base_host.values[i]));
  }
}

std::string label(const char* name, const Shape& sizes, Layout layout) {
  std::string s = std::string(name) + shape_str(sizes);
  if (layout == Layout::Transposed && sizes.size() >= 2) s += " transposed";
  if (layout == Layout::Strided && !sizes.empty()) s += " strided";
  return s;
}

TsrAttrs default_attrs() {
  TsrAttrs a;
  tsr_attrs_init(&a);
  return a;
}

uint32_t allowed_dtypes(Types types) {
  switch (types) {
    case Types::NUM: return TSR_DTYPES_FLOAT | TSR_DTYPES_INT;
    default: return TSR_DTYPES_ALL;
  }
}

int32_t float_result(Types types, int32_t dtype) {
  return types == Types::FLOAT && !is_float(dtype) ? TSR_FLOAT32 : dtype;
}

}  // namespace conf
