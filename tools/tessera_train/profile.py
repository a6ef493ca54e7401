"""Where a training iteration's GPU time goes: `tools/tessera-train CONFIG --profile N` times N
iterations under PyTorch's profiler, whose CUPTI tracing records every CUDA kernel and copy in
the process, whichever library launched it, so the same table is made for Tessera's kernels
and for PyTorch's. Kernels are summed by name and by kind (matmul, attention, layer_norm, ...);
the GPU-busy time per iteration beside the wall time per iteration shows how much of the
iteration the host's launching leaves the GPU idle."""
import time

# (kind, words in a kernel name that mark it), the first match wins; names compared lower-case.
KINDS = (
    ("attention", ("attention", "attn", "fmha", "flash", "sdpa", "cudnn_generated_fort_native_sdpa")),
    ("matmul", ("gemm", "xmma", "cutlass", "cublas", "matmul", "sm90_", "nvjet")),
    ("layer_norm", ("layer_norm", "layernorm")),
    ("cross_entropy/softmax", ("cross_entropy", "softmax", "log_softmax", "nll")),
    ("embedding/index", ("index", "embedding", "gather", "scatter", "indexing")),
    ("optimizer", ("adam", "optim", "foreach", "multi_tensor", "grad_norm", "clip", "norm")),
    ("dropout/random", ("dropout", "philox", "random", "bernoulli", "fused_dropout")),
    ("copy/cast", ("memcpy", "memset", "copy", "cast", "convert")),
    ("reduction", ("reduce", "sum", "mean")),
    ("elementwise", ("elementwise", "unary", "binary", "gelu", "add", "mul", "vectorized", "fill")),
)


def kind_of(name):
    low = name.lower()
    for kind, words in KINDS:
        if any(w in low for w in words):
            return kind
    return "other"


def _device_us(event):
    for attr in ("self_device_time_total", "self_cuda_time_total"):  # torch >= 2.4, older
        value = getattr(event, attr, None)
        if value:
            return float(value)
    return 0.0


def profile_steps(T, step, steps, device, log, warmup=5):
    """Runs step(0..warmup-1) untimed, then step(warmup..warmup+steps-1) under the profiler;
    prints the tables on log and returns the figures as a dict (per iteration)."""
    from .trainer import TrainError
    if not device.startswith("cuda"):
        raise TrainError("--profile times CUDA kernels: it needs \"device\": \"cuda\" (on the CPU, "
                         "TESSERA_LOG=trace logs each op with its time)")
    try:
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        raise TrainError("--profile needs PyTorch (its profiler records the CUDA kernels of any "
                         "library)") from None
    for i in range(warmup):
        step(i)
    T.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for i in range(steps):
            step(warmup + i)
        T.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = {}
    for e in prof.key_averages():
        us = _device_us(e)  # kernels and copies (only CUDA activity is recorded)
        if us > 0:
            calls, total = kernels.get(e.key, (0, 0.0))
            kernels[e.key] = (calls + e.count, total + us)
    busy = sum(us for _, us in kernels.values())
    by_kind = {}
    for name, (calls, us) in kernels.items():
        k = by_kind.setdefault(kind_of(name), [0, 0.0])
        k[0] += calls
        k[1] += us
    ms = 1000.0 * wall / steps
    print(f"profile: {steps} iterations, {ms:.2f} ms/iter wall (profiler on), GPU busy "
          f"{busy / 1000 / steps:.2f} ms/iter ({100 * busy / 1000 / steps / ms:.0f}%), "
          f"{sum(c for c, _ in kernels.values()) / steps:.0f} kernels/iter", file=log)
    print(f"  {'kind':<24}{'ms/iter':>9}{'share':>8}{'calls/iter':>12}", file=log)
    for kind, (calls, us) in sorted(by_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:<24}{us / 1000 / steps:>9.3f}{100 * us / max(busy, 1e-9):>7.1f}%{calls / steps:>12.1f}",
              file=log)
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:15]
    print(f"  {'kernel':<80}{'ms/iter':>9}{'calls/iter':>12}", file=log)
    for name, (calls, us) in top:
        print(f"  {name[:78]:<80}{us / 1000 / steps:>9.3f}{calls / steps:>12.1f}", file=log)
    return {
        "profile_iters": steps,
        "ms_per_iter": round(ms, 3),
        "gpu_busy_ms_per_iter": round(busy / 1000 / steps, 3),
        "kernels_per_iter": round(sum(c for c, _ in kernels.values()) / steps, 1),
        "by_kind_ms_per_iter": {k: round(us / 1000 / steps, 3)
                                for k, (_, us) in sorted(by_kind.items(), key=lambda kv: -kv[1][1])},
        "top_kernels": [[name[:120], round(us / 1000 / steps, 3), round(calls / steps, 1)]
                        for name, (calls, us) in top[:10]],
    }
