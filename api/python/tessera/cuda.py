"""tessera.cuda: torch.cuda's API over the runtime's CUDA device (tessera.h, ABI 1.2): availability, streams and
events, memory statistics and control, CUDA graphs, OutOfMemoryError.

Everything here but is_available()/device_count() needs a library with ABI 1.2 and the CUDA plugin; without
them a call raises RuntimeError (or NotImplementedError from the runtime) saying so, and importing is fine.

CUDA graphs, as in torch: run the captured code a few times on a side stream first (warm-up), so that lazy
one-time work (cuBLASLt/cuDNN handles and workspaces, optimizer state, .grad tensors) happens outside the
capture; nothing in the capture may copy to the host (.item(), .numpy(), printing) or draw random numbers; to
replay with new data, copy it into the captured input tensors in place (static_x.copy_(x)), replay, and read
the captured outputs.
"""
import contextlib
import ctypes
import gc
import json
import threading
from ctypes import byref, c_char_p, c_float, c_int32, c_void_p

from . import _C
from ._C import OutOfMemoryError
from ._factories import manual_seed
from .amp import cuda_amp as amp  # tessera.cuda.amp.autocast(enabled=True, dtype=tessera.float16, ...)

__all__ = ["amp", "CUDAGraph", "Event", "Graph", "OutOfMemoryError", "Stream", "current_device", "current_stream",
           "default_stream", "device_count", "empty_cache", "graph", "is_available", "is_current_stream_capturing",
           "manual_seed", "manual_seed_all", "max_memory_allocated", "max_memory_reserved", "memory_allocated",
           "memory_reserved", "memory_snapshot", "memory_stats", "reset_peak_memory_stats",
           "set_per_process_memory_fraction", "set_stream", "stream", "synchronize"]

_CUDA = 1  # TSR_DEVICE_CUDA
manual_seed_all = manual_seed  # the runtime has one generator for every device


# ---- devices -----------------------------------------------------------------------------------
def device_count():
    n = c_int32()
    return n.value if _C.lib.tsr_device_count(b"cuda", byref(n)) == _C.OK else 0


def is_available():
    return device_count() > 0


def current_device():
    """The ordinal "cuda" means: always 0 (the runtime has no per-thread current device)."""
    return 0


def _device(device=None):
    """The Device struct of a CUDA device: None (the current one), an ordinal, 'cuda:N' or a tessera.device."""
    d = _C.Device(_CUDA, current_device()) if device is None else _C.device_struct(device)
    if d.type != _CUDA:
        raise ValueError(f"expected a CUDA device, got {device!r}")
    return d


def synchronize(device=None):
    """Waits for all work on every stream of the device."""
    _C.check(_C.lib.tsr_synchronize(_device(device)), "synchronize")


# ---- streams -----------------------------------------------------------------------------------
# Streams come from a pool of 32 per (device, priority), handed out round-robin and never destroyed (as torch's):
# memory that was allocated or used on a stream never outlives it.
_POOL_SIZE = 32
_pools = {}  # (device index, priority) -> [handles, next index]
_pool_lock = threading.Lock()


def _pooled_stream(dev, priority):
    with _pool_lock:
        entry = _pools.setdefault((dev.index, priority), [[], 0])
        handles, i = entry
        if len(handles) < _POOL_SIZE:
            h = c_void_p()
            _C.abi12("tsr_stream_create", dev, priority, byref(h))
            handles.append(h.value)
            return h.value
        entry[1] = (i + 1) % _POOL_SIZE
        return handles[i]


class Stream:
    """A stream of a CUDA device (torch.cuda.Stream). Ops run on the calling thread's current stream of their
    device: make this one current with `with tessera.cuda.stream(s):`."""

    def __init__(self, device=None, priority=0):
        self._dev = _device(device)
        self._h = c_void_p(_pooled_stream(self._dev, int(priority)))

    @classmethod
    def _of(cls, dev, handle):
        s = object.__new__(cls)
        s._dev, s._h = dev, c_void_p(handle)
        return s

    @property
    def device(self):
        from ._types import _device_of
        return _device_of(self._dev.type, self._dev.index)

    @property
    def cuda_stream(self):
        """The cudaStream_t as an int (0: the default stream)."""
        return self._h.value or 0

    def synchronize(self):
        _C.abi12("tsr_stream_synchronize", self._dev, self._h)

    def query(self):
        """Whether all work enqueued on the stream has finished."""
        idle = c_int32()
        _C.abi12("tsr_stream_query", self._dev, self._h, byref(idle))
        return bool(idle.value)

    def wait_event(self, event):
        """Work enqueued on this stream from now on waits for `event` (a no-op if it was never recorded)."""
        if event._h is not None:
            _C.abi12("tsr_stream_wait_event", self._dev, self._h, event._h)

    def wait_stream(self, stream):
        """Work enqueued on this stream from now on waits for the work enqueued on `stream` so far."""
        self.wait_event(stream.record_event())

    def record_event(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def _key(self):
        return self._dev.index, self.cuda_stream

    def __eq__(self, other):
        return isinstance(other, Stream) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"<tessera.cuda.Stream device={self.device} cuda_stream={self.cuda_stream:#x}>"


def current_stream(device=None):
    """The calling thread's current stream of the device."""
    dev = _device(device)
    h = c_void_p()
    _C.abi12("tsr_current_stream", dev, byref(h))
    return Stream._of(dev, h.value)


def default_stream(device=None):
    return Stream._of(_device(device), None)


def set_stream(s):
    """Makes s the calling thread's current stream of its device."""
    _C.abi12("tsr_set_current_stream", s._dev, s._h)


@contextlib.contextmanager
def stream(s):
    """Makes s the current stream of its device within the block, then restores the previous one (None: no
    change). Like torch, it does not synchronize: order work across streams with wait_stream/wait_event."""
    if s is None:
        yield
        return
    prev = current_stream(s._dev)
    set_stream(s)
    try:
        yield s
    finally:
        set_stream(prev)


# ---- events ------------------------------------------------------------------------------------
class Event:
    """A CUDA event (torch.cuda.Event), created on the device of the first stream it is recorded on."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        if interprocess:
            raise NotImplementedError("interprocess events are not supported")
        self.enable_timing = bool(enable_timing)
        self._h = self._dev = None

    def record(self, stream=None):
        """Records the work enqueued on `stream` (default: the current stream) so far."""
        stream = current_stream() if stream is None else stream
        if self._h is None:
            h = c_void_p()
            _C.abi12("tsr_event_create", stream._dev, int(self.enable_timing), byref(h))
            self._h, self._dev = h, stream._dev
        elif self._dev.index != stream._dev.index:
            raise ValueError(f"event on cuda:{self._dev.index} cannot record a stream of {stream.device}")
        _C.abi12("tsr_event_record", self._dev, self._h, stream._h)

    def wait(self, stream=None):
        (current_stream() if stream is None else stream).wait_event(self)

    def query(self):
        """Whether the recorded work has finished (True for an event never recorded)."""
        if self._h is None:
            return True
        done = c_int32()
        _C.abi12("tsr_event_query", self._dev, self._h, byref(done))
        return bool(done.value)

    def synchronize(self):
        if self._h is not None:
            _C.abi12("tsr_event_synchronize", self._dev, self._h)

    def elapsed_time(self, end_event):
        """Milliseconds between this event and end_event (both recorded, with enable_timing=True)."""
        if self._h is None or end_event._h is None:
            raise RuntimeError("elapsed_time: both events must be recorded first")
        ms = c_float()
        _C.abi12("tsr_event_elapsed_time", self._dev, self._h, end_event._h, byref(ms))
        return ms.value

    def __del__(self):
        if getattr(self, "_h", None) is not None:
            with contextlib.suppress(Exception):
                _C.abi12("tsr_event_destroy", self._dev, self._h)

    def __repr__(self):
        return f"<tessera.cuda.Event {'uninitialized' if self._h is None else hex(self._h.value or 0)}>"


# ---- memory ------------------------------------------------------------------------------------
def memory_stats(device=None):
    """The caching allocator's statistics: torch's keys (allocated_bytes.all.current/peak,
    reserved_bytes.all.current/peak, num_alloc_retries, num_ooms) and num_allocs, num_device_allocs (requests
    that needed cudaMalloc), limit (the memory-fraction cap in bytes, 0: none) and total (the device's memory)."""
    s = _C.MemoryStats()
    s.struct_size = ctypes.sizeof(s)
    _C.abi12("tsr_memory_stats", _device(device), byref(s))
    return {"allocated_bytes.all.current": s.allocated, "allocated_bytes.all.peak": s.peak_allocated,
            "reserved_bytes.all.current": s.reserved_bytes, "reserved_bytes.all.peak": s.peak_reserved,
            "num_alloc_retries": s.num_retries, "num_ooms": s.num_ooms, "num_allocs": s.num_allocs,
            "num_device_allocs": s.num_device_allocs, "limit": s.limit, "total": s.total}


def memory_allocated(device=None):
    return memory_stats(device)["allocated_bytes.all.current"]


def max_memory_allocated(device=None):
    return memory_stats(device)["allocated_bytes.all.peak"]


def memory_reserved(device=None):
    return memory_stats(device)["reserved_bytes.all.current"]


def max_memory_reserved(device=None):
    return memory_stats(device)["reserved_bytes.all.peak"]


def reset_peak_memory_stats(device=None):
    _C.abi12("tsr_reset_peak_memory_stats", _device(device))


def empty_cache(device=None):
    """Gives the allocator's cached, unused blocks back to the device."""
    _C.abi12("tsr_empty_cache", _device(device))


def set_per_process_memory_fraction(fraction, device=None):
    """Caps the memory the allocator may reserve at `fraction` (0, 1] of the device's memory."""
    _C.abi12("tsr_set_memory_fraction", _device(device), float(fraction))


def memory_snapshot(device=None):
    """The allocator's segments and blocks (the runtime's JSON, parsed)."""
    text = c_char_p()
    _C.abi12("tsr_memory_snapshot", _device(device), byref(text))
    return json.loads(text.value.decode() if text.value else "null")


# ---- graphs ------------------------------------------------------------------------------------
_capturing = set()  # (device index, stream handle) of the captures under way (tracked here)


def is_current_stream_capturing():
    """Whether a capture started here is under way on the current stream of the current device."""
    return bool(_capturing) and current_stream()._key() in _capturing


class CUDAGraph:
    """A CUDA graph (torch.cuda.CUDAGraph): the ops enqueued on the current (non-default) stream between
    capture_begin() and capture_end() are recorded, not run; replay() reruns them on the same memory. Their
    outputs live in a memory pool private to the graph: keep the captured output tensors, and drop them before
    reset(). See the module's notes on warm-up."""

    def __init__(self):
        self._h = self._stream = None

    def capture_begin(self, pool=None, capture_error_mode="global"):
        if pool is not None:
            raise NotImplementedError("CUDAGraph: sharing a memory pool between graphs (pool=) is not supported")
        if self._stream is not None:
            raise RuntimeError("CUDAGraph: this graph already holds a capture; reset() it first")
        s = current_stream()
        if not s.cuda_stream:
            raise RuntimeError("CUDAGraph: cannot capture on the default stream; capture inside "
                               "`with tessera.cuda.graph(g):` (a side stream) or `with tessera.cuda.stream(s):`")
        _C.abi12("tsr_graph_capture_begin", s._dev, s._h)
        self._stream = s
        _capturing.add(s._key())

    def capture_end(self):
        s = self._stream
        if s is None or self._h is not None:
            raise RuntimeError("CUDAGraph: capture_end() without capture_begin()")
        _capturing.discard(s._key())
        h = c_void_p()
        try:
            _C.abi12("tsr_graph_capture_end", s._dev, s._h, byref(h))
        except Exception:
            self._stream = None
            raise
        self._h = h

    def replay(self):
        """Launches the captured work on the current stream of the graph's device."""
        if self._h is None:
            raise RuntimeError("CUDAGraph: nothing to replay (capture first)")
        dev = self._stream._dev
        _C.abi12("tsr_graph_replay", dev, self._h, current_stream(dev)._h)

    def reset(self):
        """Frees the graph and its memory pool (drop the captured outputs first)."""
        h, self._h, s, self._stream = self._h, None, self._stream, None
        if h is not None:
            _C.abi12("tsr_graph_destroy", s._dev, h)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.reset()


Graph = CUDAGraph


class graph:
    """`with tessera.cuda.graph(g):` captures the block into CUDAGraph g (torch.cuda.graph): the work queued
    so far is finished first, then the block runs with `stream` (default: a side stream of the device) as the
    current stream while g records it. If the block raises, the capture is ended and dropped."""
    _side_streams = {}  # device index -> the default capture stream

    def __init__(self, cuda_graph, pool=None, stream=None, capture_error_mode="global"):
        self.cuda_graph, self.pool, self.capture_error_mode = cuda_graph, pool, capture_error_mode
        if stream is None:
            dev = _device()
            stream = graph._side_streams.get(dev.index) or graph._side_streams.setdefault(dev.index, Stream(dev))
        self.stream = stream

    def __enter__(self):
        synchronize(self.stream._dev)
        gc.collect()  # tensors that are garbage free their memory now, not during the capture
        empty_cache(self.stream._dev)
        self._prev = current_stream(self.stream._dev)
        set_stream(self.stream)
        try:
            self.cuda_graph.capture_begin(self.pool, self.capture_error_mode)
        except BaseException:
            set_stream(self._prev)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.cuda_graph.capture_end()
            else:
                with contextlib.suppress(Exception):
                    self.cuda_graph.capture_end()
                with contextlib.suppress(Exception):
                    self.cuda_graph.reset()
        finally:
            set_stream(self._prev)
        return False
