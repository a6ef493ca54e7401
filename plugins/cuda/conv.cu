// 2-D convolution and max pooling of the CUDA plugin (NCHW, contiguous operands; plugin.h):
// conv2d and its two gradients through cuDNN's legacy convolution API (heuristic algorithm
// choice cached per shape, workspace from Scratch), with direct CUDA kernels for whatever cuDNN
// refuses; max_pool2d and its gradient by our own kernels (the CPU plugin's NaN/tie rules).
#include <cudnn.h>

#include <array>
#include <climits>
#include <cmath>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "cuda_common.cuh"

namespace tcu {
namespace {

constexpr int kMaxDevices = 64;
constexpr size_t kMaxConvWorkspace = size_t(1) << 30;  // candidates needing more are skipped

// ---- geometry ------------------------------------------------------------------------------

struct ConvGeom {
  int64_t N, C, H, W;  // input
  int64_t O, kh, kw;   // weight [O, C / groups, kh, kw]
  int64_t Ho, Wo;      // output
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t Cg, Og;      // channels per group
};

// x [N,C,H,W], w [O,Cg,kh,kw], y [N,O,Ho,Wo] (any of them may be the call's output).
bool make_geom(const TsrTensorDesc& x, const TsrTensorDesc& w, const TsrTensorDesc& y, const TsrAttrs& a,
               ConvGeom& g) {
  if (x.ndim != 4 || w.ndim != 4 || y.ndim != 4) return false;
  g.N = x.sizes[0], g.C = x.sizes[1], g.H = x.sizes[2], g.W = x.sizes[3];
  g.O = w.sizes[0], g.kh = w.sizes[2], g.kw = w.sizes[3];
  g.Ho = y.sizes[2], g.Wo = y.sizes[3];
  g.sh = a.stride2[0], g.sw = a.stride2[1], g.ph = a.padding[0], g.pw = a.padding[1];
  g.dh = a.dilation[0], g.dw = a.dilation[1], g.groups = a.groups;
  if (g.groups < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1 || g.ph < 0 || g.pw < 0) return false;
  g.Cg = g.C / g.groups, g.Og = g.O / g.groups;
  return g.C == g.Cg * g.groups && w.sizes[1] == g.Cg && g.O == g.Og * g.groups && y.sizes[0] == g.N &&
         y.sizes[1] == g.O;
}

// ---- direct kernels (cuDNN fallback) ---------------------------------------------------------

// y[n,o,oh,ow] = bias[o] + sum_{c,i,j} x[n, grp*Cg + c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] w[o,c,i,j]
template <class S>
__global__ void conv_fwd_direct(const S* __restrict__ x, const S* __restrict__ w, const S* __restrict__ bias,
                                S* __restrict__ y, ConvGeom g, int64_t total) {
  using C = compute_t<S>;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = idx % g.Wo, oh = (idx / g.Wo) % g.Ho, o = (idx / (g.Wo * g.Ho)) % g.O,
                  n = idx / (g.Wo * g.Ho * g.O);
    const int64_t grp = o / g.Og;
    C acc = bias ? cast<C>(bias[o]) : C(0);
    for (int64_t c = 0; c < g.Cg; ++c) {
      const S* xp = x + (n * g.C + grp * g.Cg + c) * g.H * g.W;
      const S* wp = w + (o * g.Cg + c) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pw + j * g.dw;
          if (iw < 0 || iw >= g.W) continue;
          acc += cast<C>(xp[ih * g.W + iw]) * cast<C>(wp[i * g.kw + j]);
        }
      }
    }
    y[idx] = cast<S>(acc);
  }
}

// dx[n,ci,h,w] = sum over the taps that read it: gy[n,o,oh,ow] w[o,c,i,j]
template <class S>
__global__ void conv_bwd_input_direct(const S* __restrict__ gy, const S* __restrict__ w, S* __restrict__ dx,
                                      ConvGeom g, int64_t total) {
  using C = compute_t<S>;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = idx % g.W, ih = (idx / g.W) % g.H, ci = (idx / (g.W * g.H)) % g.C,
                  n = idx / (g.W * g.H * g.C);
    const int64_t grp = ci / g.Cg, c = ci - grp * g.Cg;
    C acc = C(0);
    for (int64_t o = grp * g.Og; o < (grp + 1) * g.Og; ++o) {
      const S* gp = gy + (n * g.O + o) * g.Ho * g.Wo;
      const S* wp = w + (o * g.Cg + c) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t th = ih + g.ph - i * g.dh;
        if (th < 0 || th % g.sh != 0) continue;
        const int64_t oh = th / g.sh;
        if (oh >= g.Ho) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tw = iw + g.pw - j * g.dw;
          if (tw < 0 || tw % g.sw != 0) continue;
          const int64_t ow = tw / g.sw;
          if (ow >= g.Wo) continue;
          acc += cast<C>(gp[oh * g.Wo + ow]) * cast<C>(wp[i * g.kw + j]);
        }
      }
    }
    dx[idx] = cast<S>(acc);
  }
}

constexpr int kReduceThreads = 256;

// One block per dw[o,c,i,j] = sum_{n,oh,ow} gy[n,o,oh,ow] x[n, grp*Cg + c, ih, iw].
template <class S>
__global__ void __launch_bounds__(kReduceThreads)
conv_bwd_weight_direct(const S* __restrict__ gy, const S* __restrict__ x, S* __restrict__ dw, ConvGeom g,
                       int64_t total) {
  using C = compute_t<S>;
  __shared__ C partial[kReduceThreads / 32];
  const int64_t per = g.N * g.Ho * g.Wo;
  for (int64_t idx = blockIdx.x; idx < total; idx += gridDim.x) {
    const int64_t j = idx % g.kw, i = (idx / g.kw) % g.kh, c = (idx / (g.kw * g.kh)) % g.Cg,
                  o = idx / (g.kw * g.kh * g.Cg);
    const int64_t ci = (o / g.Og) * g.Cg + c;
    C acc = C(0);
    for (int64_t t = threadIdx.x; t < per; t += blockDim.x) {
      const int64_t ow = t % g.Wo, oh = (t / g.Wo) % g.Ho, n = t / (g.Wo * g.Ho);
      const int64_t ih = oh * g.sh - g.ph + i * g.dh, iw = ow * g.sw - g.pw + j * g.dw;
      if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
      acc += cast<C>(gy[((n * g.O + o) * g.Ho + oh) * g.Wo + ow]) * cast<C>(x[((n * g.C + ci) * g.H + ih) * g.W + iw]);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      C sum = C(0);
      for (int k = 0; k < kReduceThreads / 32; ++k) sum += partial[k];
      dw[idx] = cast<S>(sum);
    }
    __syncthreads();
  }
}

// y[n,o,:,:] += bias[o] (after cuDNN's forward).
template <class S>
__global__ void add_bias_kernel(S* __restrict__ y, const S* __restrict__ bias, int64_t O, int64_t P, int64_t total) {
  using C = compute_t<S>;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x)
    y[idx] = cast<S>(cast<C>(y[idx]) + cast<C>(bias[(idx / P) % O]));
}

unsigned blocks_capped(int64_t n, int threads) {
  const unsigned b = grid_for(n, threads);
  return b < (1u << 20) ? b : (1u << 20);
}

// ---- cuDNN ---------------------------------------------------------------------------------

enum Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2 };

struct Candidate {
  int algo;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  size_t workspace;
  cudnnMathType_t math;
};

// Descriptors of one convolution shape and, per direction, cuDNN's usable algorithms in
// heuristic order (filled on the direction's first call).
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool ok = false;  // descriptors accepted
  bool queried[3] = {false, false, false};
  std::vector<Candidate> cand[3];
  ~ConvPlan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

using ConvKey = std::array<int64_t, 17>;
using ConvKeyHash = KeyHash;

// Per device: the handle (its stream is set per call, so every use holds the mutex) and plans.
struct CudnnDevice {
  std::mutex mu;
  cudnnHandle_t handle = nullptr;
  bool create_failed = false;
  std::unordered_map<ConvKey, std::unique_ptr<ConvPlan>, ConvKeyHash> plans;
};

std::mutex g_devices_mutex;
CudnnDevice* g_devices[kMaxDevices];  // leaked on purpose: no teardown-order issues

CudnnDevice* cudnn_device(int dev) {
  if (dev < 0 || dev >= kMaxDevices) return nullptr;
  std::lock_guard<std::mutex> lock(g_devices_mutex);
  if (!g_devices[dev]) g_devices[dev] = new CudnnDevice();
  return g_devices[dev];
}

cudnnDataType_t cudnn_type(int32_t dtype) {
  switch (dtype) {
    case TSR_FLOAT16: return CUDNN_DATA_HALF;
    case TSR_BFLOAT16: return CUDNN_DATA_BFLOAT16;
    case TSR_FLOAT64: return CUDNN_DATA_DOUBLE;
    default: return CUDNN_DATA_FLOAT;
  }
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

// cuDNN's legacy API takes int dims and tensors below 2^31 elements.
bool cudnn_can(const ConvGeom& g) {
  const int64_t positive[] = {g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, g.Ho, g.Wo, g.sh, g.sw, g.dh, g.dw, g.groups};
  for (int64_t d : positive)
    if (d < 1 || d > INT_MAX) return false;
  if (!fits_int(g.ph) || !fits_int(g.pw)) return false;
  const int64_t big = int64_t(INT_MAX);
  return g.N * g.C * g.H * g.W <= big && g.N * g.O * g.Ho * g.Wo <= big && g.O * g.Cg * g.kh * g.kw <= big;
}

bool build_descriptors(const ConvGeom& g, int32_t dtype, bool strict_fp32, ConvPlan& p) {
  const cudnnDataType_t dt = cudnn_type(dtype);
  const cudnnDataType_t ct = dtype == TSR_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  if (cudnnCreateTensorDescriptor(&p.x) != CUDNN_STATUS_SUCCESS) return false;
  if (cudnnCreateTensorDescriptor(&p.y) != CUDNN_STATUS_SUCCESS) return false;
  if (cudnnCreateFilterDescriptor(&p.w) != CUDNN_STATUS_SUCCESS) return false;
  if (cudnnCreateConvolutionDescriptor(&p.conv) != CUDNN_STATUS_SUCCESS) return false;
  if (cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, dt, int(g.N), int(g.C), int(g.H), int(g.W)) !=
      CUDNN_STATUS_SUCCESS)
    return false;
  if (cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, dt, int(g.N), int(g.O), int(g.Ho), int(g.Wo)) !=
      CUDNN_STATUS_SUCCESS)
    return false;
  if (cudnnSetFilter4dDescriptor(p.w, dt, CUDNN_TENSOR_NCHW, int(g.O), int(g.Cg), int(g.kh), int(g.kw)) !=
      CUDNN_STATUS_SUCCESS)
    return false;
  if (cudnnSetConvolution2dDescriptor(p.conv, int(g.ph), int(g.pw), int(g.sh), int(g.sw), int(g.dh), int(g.dw),
                                      CUDNN_CROSS_CORRELATION, ct) != CUDNN_STATUS_SUCCESS)
    return false;
  if (cudnnSetConvolutionGroupCount(p.conv, int(g.groups)) != CUDNN_STATUS_SUCCESS) return false;
  const cudnnMathType_t math = dtype == TSR_FLOAT64 ? CUDNN_DEFAULT_MATH
                               : strict_fp32        ? CUDNN_FMA_MATH
                                                    : CUDNN_TENSOR_OP_MATH;
  if (cudnnSetConvolutionMathType(p.conv, math) != CUDNN_STATUS_SUCCESS) return false;
  // cuDNN must agree with our output shape
  int on = 0, oc = 0, oh = 0, ow = 0;
  if (cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &on, &oc, &oh, &ow) != CUDNN_STATUS_SUCCESS)
    return false;
  return on == g.N && oc == g.O && oh == g.Ho && ow == g.Wo;
}

bool is_tensor_op(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// Fills p.cand[dir]: heuristic order, successful, workspace within the cap; strict float32
// drops tensor-op (TF32) algorithms and runs with FMA math.
template <class Perf, class WsOf>
void keep_candidates(const Perf* perf, int n, bool strict_fp32, std::vector<Candidate>& out, const WsOf& ws_of) {
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    if (strict_fp32 && is_tensor_op(perf[i].mathType)) continue;
    size_t ws = perf[i].memory;
    size_t ws2 = 0;
    if (!ws_of(static_cast<int>(perf[i].algo), &ws2)) continue;
    if (ws2 > ws) ws = ws2;
    if (ws > kMaxConvWorkspace) continue;
    bool dup = false;
    for (const Candidate& c : out) dup |= c.algo == static_cast<int>(perf[i].algo);
    if (dup) continue;
    out.push_back({static_cast<int>(perf[i].algo), ws, strict_fp32 ? CUDNN_FMA_MATH : perf[i].mathType});
  }
}

void query_candidates(cudnnHandle_t h, ConvPlan& p, Dir dir, bool strict_fp32) {
  constexpr int kMax = 16;
  int n = 0;
  std::vector<Candidate>& out = p.cand[dir];
  if (dir == kFwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[kMax];
    if (cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, kMax, &n, perf) != CUDNN_STATUS_SUCCESS)
      n = 0;
    keep_candidates(perf, n, strict_fp32, out, [&](int algo, size_t* ws) {
      return cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y,
                                                     static_cast<cudnnConvolutionFwdAlgo_t>(algo),
                                                     ws) == CUDNN_STATUS_SUCCESS;
    });
  } else if (dir == kBwdData) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
    if (cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, kMax, &n, perf) !=
        CUDNN_STATUS_SUCCESS)
      n = 0;
    keep_candidates(perf, n, strict_fp32, out, [&](int algo, size_t* ws) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x,
                                                          static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
                                                          ws) == CUDNN_STATUS_SUCCESS;
    });
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
    if (cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, kMax, &n, perf) !=
        CUDNN_STATUS_SUCCESS)
      n = 0;
    keep_candidates(perf, n, strict_fp32, out, [&](int algo, size_t* ws) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w,
                                                            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo),
                                                            ws) == CUDNN_STATUS_SUCCESS;
    });
  }
  p.queried[dir] = true;
}

// Runs one direction through cuDNN. Operands per dir: kFwd: a = x, b = w, out = y;
// kBwdData: a = gy, b = w, out = dx; kBwdFilter: a = gy, b = x, out = dw.
// done = false (with TSR_OK) when cuDNN cannot do it: the caller runs the direct kernel.
int32_t cudnn_conv(const TsrKernelArgs* args, Dir dir, const ConvGeom& g, int32_t dtype, const void* a,
                   const void* b, void* out, bool& done) {
  done = false;
  if (!cudnn_can(g)) return TSR_OK;
  const int dev = device_of(args);
  const cudaStream_t s = stream_of(args);
  CudnnDevice* d = cudnn_device(dev);
  if (!d) return TSR_OK;
  const bool strict_fp32 = dtype == TSR_FLOAT32 && !allow_tf32();
  std::lock_guard<std::mutex> lock(d->mu);
  if (!d->handle) {
    if (d->create_failed) return TSR_OK;
    int prev = -1;
    TCU_TRY(args, cudaGetDevice(&prev));
    if (prev != dev) TCU_TRY(args, cudaSetDevice(dev));
    if (cudnnCreate(&d->handle) != CUDNN_STATUS_SUCCESS) {
      d->handle = nullptr;
      d->create_failed = true;
    }
    if (prev != dev) cudaSetDevice(prev);
    if (!d->handle) return TSR_OK;
  }
  const ConvKey key{dtype, g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups,
                    strict_fp32 ? 1 : 0, 0};
  auto it = d->plans.find(key);
  if (it == d->plans.end()) {
    if (d->plans.size() >= 1024) d->plans.clear();  // every use holds d->mu: nobody else holds a plan
    auto plan = std::make_unique<ConvPlan>();
    plan->ok = build_descriptors(g, dtype, strict_fp32, *plan);
    it = d->plans.emplace(key, std::move(plan)).first;
  }
  ConvPlan& p = *it->second;
  if (!p.ok) return TSR_OK;
  if (!p.queried[dir]) query_candidates(d->handle, p, dir, strict_fp32);
  if (p.cand[dir].empty()) return TSR_OK;
  if (cudnnSetStream(d->handle, s) != CUDNN_STATUS_SUCCESS) return TSR_OK;

  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const bool f64 = dtype == TSR_FLOAT64;
  const void* alpha = f64 ? static_cast<const void*>(&one_d) : static_cast<const void*>(&one_f);
  const void* beta = f64 ? static_cast<const void*>(&zero_d) : static_cast<const void*>(&zero_f);
  for (const Candidate& c : p.cand[dir]) {
    std::optional<Scratch> ws;
    if (c.workspace) {
      ws.emplace(dev, c.workspace, s);
      if (!*ws) continue;  // try a candidate needing less
    }
    void* wsp = ws ? ws->get() : nullptr;
    if (cudnnSetConvolutionMathType(p.conv, c.math) != CUDNN_STATUS_SUCCESS) continue;
    cudnnStatus_t st;
    if (dir == kFwd)
      st = cudnnConvolutionForward(d->handle, alpha, p.x, a, p.w, b, p.conv,
                                   static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), wsp, c.workspace, beta, p.y, out);
    else if (dir == kBwdData)
      st = cudnnConvolutionBackwardData(d->handle, alpha, p.w, b, p.y, a, p.conv,
                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), wsp, c.workspace, beta,
                                        p.x, out);
    else
      st = cudnnConvolutionBackwardFilter(d->handle, alpha, p.x, b, p.y, a, p.conv,
                                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), wsp, c.workspace,
                                          beta, p.w, out);
    if (st == CUDNN_STATUS_SUCCESS) {
      done = true;
      return TSR_OK;
    }
  }
  return TSR_OK;
}

int32_t check_conv_dtypes(const TsrKernelArgs* a) {
  const int32_t dt = a->outputs[0].dtype;
  if (dt != TSR_FLOAT16 && dt != TSR_BFLOAT16 && dt != TSR_FLOAT32 && dt != TSR_FLOAT64)
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", dt);
  if (!is_contiguous(a->outputs[0])) return fail(a, TSR_ERR_INVALID_ARGUMENT, "the output must be contiguous");
  for (int32_t i = 0; i < a->num_inputs; ++i)
    if (a->inputs[i].dtype != dt || !is_contiguous(a->inputs[i]))
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "operand %d must be contiguous and of the output's dtype", i);
  return TSR_OK;
}

// ---- max_pool2d ----------------------------------------------------------------------------

struct PoolGeom {
  int64_t planes, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw;
};

bool make_pool_geom(const TsrTensorDesc& x, const TsrTensorDesc& y, const TsrAttrs& a, PoolGeom& g) {
  if (x.ndim != 4 || y.ndim != 4 || x.sizes[0] != y.sizes[0] || x.sizes[1] != y.sizes[1]) return false;
  g = {x.sizes[0] * x.sizes[1], x.sizes[2], x.sizes[3], y.sizes[2], y.sizes[3], a.kernel[0], a.kernel[1],
       a.stride2[0], a.stride2[1], a.padding[0], a.padding[1], a.dilation[0], a.dilation[1]};
  return g.kh >= 1 && g.kw >= 1 && g.sh >= 1 && g.sw >= 1 && g.dh >= 1 && g.dw >= 1 && g.ph >= 0 && g.pw >= 0;
}

// Index (in the plane) of window (oh, ow)'s maximum: the first one in row-major window order,
// the last NaN if there is one; the first tap inside the input if all are -inf; -1 when no tap
// lies inside the input (best stays -inf). I: index type.
template <class I, class C, class S>
__device__ __forceinline__ I window_argmax(const S* __restrict__ xp, I H, I W, I h0, I w0, I kh, I kw, I dh, I dw,
                                           C& best) {
  best = -INFINITY;
  I arg = -1;
  for (I i = 0; i < kh; ++i) {
    const I ih = h0 + i * dh;
    if (ih < 0 || ih >= H) continue;
    for (I j = 0; j < kw; ++j) {
      const I iw = w0 + j * dw;
      if (iw < 0 || iw >= W) continue;
      const C v = cast<C>(xp[ih * W + iw]);
      if (arg < 0) arg = ih * W + iw;
      if (v > best || v != v) {
        best = v;
        arg = ih * W + iw;
      }
    }
  }
  return arg;
}

template <class S, class I>
__global__ void max_pool_fwd_kernel(const S* __restrict__ x, S* __restrict__ y, PoolGeom g64, I total) {
  using C = compute_t<S>;
  const I H = I(g64.H), W = I(g64.W), Ho = I(g64.Ho), Wo = I(g64.Wo), kh = I(g64.kh), kw = I(g64.kw),
          sh = I(g64.sh), sw = I(g64.sw), ph = I(g64.ph), pw = I(g64.pw), dh = I(g64.dh), dw = I(g64.dw);
  for (I idx = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); idx < total; idx += I(gridDim.x) * I(blockDim.x)) {
    const I ow = idx % Wo, t = idx / Wo, oh = t % Ho, plane = t / Ho;
    C best;
    window_argmax<I, C>(x + plane * H * W, H, W, oh * sh - ph, ow * sw - pw, kh, kw, dh, dw, best);
    y[idx] = cast<S>(best);
  }
}

// Each window adds its gradient at its argmax (atomics: the order of additions, and so the
// rounding of overlapping windows' sums, is not deterministic).
template <class S, class A, class I>
__global__ void max_pool_bwd_kernel(const S* __restrict__ gy, const S* __restrict__ x, A* __restrict__ acc,
                                    PoolGeom g64, I total) {
  using C = compute_t<S>;
  const I H = I(g64.H), W = I(g64.W), Ho = I(g64.Ho), Wo = I(g64.Wo), kh = I(g64.kh), kw = I(g64.kw),
          sh = I(g64.sh), sw = I(g64.sw), ph = I(g64.ph), pw = I(g64.pw), dh = I(g64.dh), dw = I(g64.dw);
  for (I idx = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); idx < total; idx += I(gridDim.x) * I(blockDim.x)) {
    const I ow = idx % Wo, t = idx / Wo, oh = t % Ho, plane = t / Ho;
    C best;
    const I arg = window_argmax<I, C>(x + plane * H * W, H, W, oh * sh - ph, ow * sw - pw, kh, kw, dh, dw, best);
    if (arg >= 0) atomicAdd(acc + plane * H * W + arg, static_cast<A>(cast<C>(gy[idx])));
  }
}

template <class S, class I>
__global__ void float_to_kernel(const float* __restrict__ src, S* __restrict__ dst, I n) {
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < n; i += I(gridDim.x) * I(blockDim.x))
    dst[i] = cast<S>(src[i]);
}

constexpr int kThreads = 256;

}  // namespace

// ---- entry points --------------------------------------------------------------------------

int32_t kernel_conv2d(const TsrKernelArgs* args) {
  if (int32_t st = check_conv_dtypes(args)) return st;
  const TsrTensorDesc &x = args->inputs[0], &w = args->inputs[1], &y = args->outputs[0];
  ConvGeom g;
  if (args->num_inputs < 2 || !make_geom(x, w, y, *args->attrs, g))
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "operands do not form a convolution");
  const TsrTensorDesc* bias = args->num_inputs > 2 ? &args->inputs[2] : nullptr;
  if (bias && (bias->ndim != 1 || bias->sizes[0] != g.O))
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "bias must be 1-D of size %lld", (long long)g.O);
  bool done = false;
  if (int32_t st = cudnn_conv(args, kFwd, g, y.dtype, x.data, w.data, y.data, done)) return st;
  const int64_t total = numel(y);
  int32_t status = TSR_OK;
  dispatch_float(y.dtype, [&](auto t) {
    using S = decltype(t);
    const cudaStream_t s = stream_of(args);
    if (done) {
      if (!bias) return;
      add_bias_kernel<S><<<blocks_capped(total, kThreads), kThreads, 0, s>>>(
          static_cast<S*>(y.data), static_cast<const S*>(bias->data), g.O, g.Ho * g.Wo, total);
      status = check_launch(args, "add_bias_kernel");
    } else {
      conv_fwd_direct<S><<<blocks_capped(total, kThreads), kThreads, 0, s>>>(
          static_cast<const S*>(x.data), static_cast<const S*>(w.data),
          bias ? static_cast<const S*>(bias->data) : nullptr, static_cast<S*>(y.data), g, total);
      status = check_launch(args, "conv_fwd_direct");
    }
  });
  return status;
}

int32_t kernel_conv2d_backward_input(const TsrKernelArgs* args) {
  if (int32_t st = check_conv_dtypes(args)) return st;
  const TsrTensorDesc &gy = args->inputs[0], &w = args->inputs[1], &dx = args->outputs[0];
  ConvGeom g;
  if (args->num_inputs < 2 || !make_geom(dx, w, gy, *args->attrs, g))
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "operands do not form a convolution");
  bool done = false;
  if (int32_t st = cudnn_conv(args, kBwdData, g, dx.dtype, gy.data, w.data, dx.data, done)) return st;
  if (done) return TSR_OK;
  const int64_t total = numel(dx);
  int32_t status = TSR_OK;
  dispatch_float(dx.dtype, [&](auto t) {
    using S = decltype(t);
    conv_bwd_input_direct<S><<<blocks_capped(total, kThreads), kThreads, 0, stream_of(args)>>>(
        static_cast<const S*>(gy.data), static_cast<const S*>(w.data), static_cast<S*>(dx.data), g, total);
    status = check_launch(args, "conv_bwd_input_direct");
  });
  return status;
}

int32_t kernel_conv2d_backward_weight(const TsrKernelArgs* args) {
  if (int32_t st = check_conv_dtypes(args)) return st;
  const TsrTensorDesc &gy = args->inputs[0], &x = args->inputs[1], &dw = args->outputs[0];
  ConvGeom g;
  if (args->num_inputs < 2 || !make_geom(x, dw, gy, *args->attrs, g))
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "operands do not form a convolution");
  bool done = false;
  if (int32_t st = cudnn_conv(args, kBwdFilter, g, dw.dtype, gy.data, x.data, dw.data, done)) return st;
  if (done) return TSR_OK;
  const int64_t total = numel(dw);
  int32_t status = TSR_OK;
  dispatch_float(dw.dtype, [&](auto t) {
    using S = decltype(t);
    const unsigned blocks = total < (int64_t(1) << 20) ? unsigned(total) : (1u << 20);
    conv_bwd_weight_direct<S><<<blocks, kReduceThreads, 0, stream_of(args)>>>(
        static_cast<const S*>(gy.data), static_cast<const S*>(x.data), static_cast<S*>(dw.data), g, total);
    status = check_launch(args, "conv_bwd_weight_direct");
  });
  return status;
}

int32_t kernel_max_pool2d(const TsrKernelArgs* args) {
  if (int32_t st = check_conv_dtypes(args)) return st;
  const TsrTensorDesc &x = args->inputs[0], &y = args->outputs[0];
  PoolGeom g;
  if (args->num_inputs < 1 || !make_pool_geom(x, y, *args->attrs, g))
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "operands do not form a pooling");
  const int64_t total = numel(y);
  const bool small = numel(x) < (int64_t(1) << 30) && total < (int64_t(1) << 30);
  int32_t status = TSR_OK;
  dispatch_float(y.dtype, [&](auto t) {
    using S = decltype(t);
    const unsigned blocks = blocks_capped(total, kThreads);
    const S* xp = static_cast<const S*>(x.data);
    S* yp = static_cast<S*>(y.data);
    if (small)
      max_pool_fwd_kernel<S, int32_t><<<blocks, kThreads, 0, stream_of(args)>>>(xp, yp, g, int32_t(total));
    else
      max_pool_fwd_kernel<S, int64_t><<<blocks, kThreads, 0, stream_of(args)>>>(xp, yp, g, total);
    status = check_launch(args, "max_pool_fwd_kernel");
  });
  return status;
}

int32_t kernel_max_pool2d_backward(const TsrKernelArgs* args) {
  if (int32_t st = check_conv_dtypes(args)) return st;
  const TsrTensorDesc &gy = args->inputs[0], &x = args->inputs[1], &dx = args->outputs[0];
  PoolGeom g;
  if (args->num_inputs < 2 || !make_pool_geom(x, gy, *args->attrs, g) || x.sizes[2] != dx.sizes[2] ||
      x.sizes[3] != dx.sizes[3] || x.sizes[0] != dx.sizes[0] || x.sizes[1] != dx.sizes[1])
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "operands do not form a pooling");
  const int64_t total = numel(gy), nx = numel(dx);
  const bool small = nx < (int64_t(1) << 30) && total < (int64_t(1) << 30);
  const cudaStream_t s = stream_of(args);
  const int dev = device_of(args);
  int32_t status = TSR_OK;
  dispatch_float(dx.dtype, [&](auto t) {
    using S = decltype(t);
    const S* gp = static_cast<const S*>(gy.data);
    const S* xp = static_cast<const S*>(x.data);
    const unsigned blocks = blocks_capped(total, kThreads);
    if constexpr (std::is_same_v<S, float> || std::is_same_v<S, double>) {
      S* acc = static_cast<S*>(dx.data);
      cudaError_t e = cudaMemsetAsync(acc, 0, size_t(nx) * sizeof(S), s);
      if (e != cudaSuccess) {
        status = fail_cuda(args, "cudaMemsetAsync", e);
        return;
      }
      if (small)
        max_pool_bwd_kernel<S, S, int32_t><<<blocks, kThreads, 0, s>>>(gp, xp, acc, g, int32_t(total));
      else
        max_pool_bwd_kernel<S, S, int64_t><<<blocks, kThreads, 0, s>>>(gp, xp, acc, g, total);
      status = check_launch(args, "max_pool_bwd_kernel");
    } else {
      // float16/bfloat16: sums in float32 [N,C,H,W], rounded once
      Scratch buf(dev, size_t(nx) * sizeof(float), s);
      if (!buf) {
        status = fail(args, TSR_ERR_OUT_OF_MEMORY, "out of memory for the pooling gradient");
        return;
      }
      float* acc = buf.as<float>();
      cudaError_t e = cudaMemsetAsync(acc, 0, size_t(nx) * sizeof(float), s);
      if (e != cudaSuccess) {
        status = fail_cuda(args, "cudaMemsetAsync", e);
        return;
      }
      if (small)
        max_pool_bwd_kernel<S, float, int32_t><<<blocks, kThreads, 0, s>>>(gp, xp, acc, g, int32_t(total));
      else
        max_pool_bwd_kernel<S, float, int64_t><<<blocks, kThreads, 0, s>>>(gp, xp, acc, g, total);
      if ((status = check_launch(args, "max_pool_bwd_kernel")) != TSR_OK) return;
      const unsigned cblocks = blocks_capped(nx, kThreads);
      if (small)
        float_to_kernel<S, int32_t><<<cblocks, kThreads, 0, s>>>(acc, static_cast<S*>(dx.data), int32_t(nx));
      else
        float_to_kernel<S, int64_t><<<cblocks, kThreads, 0, s>>>(acc, static_cast<S*>(dx.data), nx);
      status = check_launch(args, "float_to_kernel");
    }
  });
  return status;
}

}  // namespace tcu
