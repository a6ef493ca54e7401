"""tessera.backends: torch.backends-style switches of the device plugins, kept in the runtime as device options
(tsr_device_set_option): backends.cuda.matmul.allow_tf32 and backends.cudnn.allow_tf32 (one option, "allow_tf32"
of "cuda": float32 matmul and conv may use TF32 tensor cores; default False)."""
from ctypes import byref, c_int64

from . import _C


class _DeviceOption:
    """A bool attribute backed by the runtime option (device_type, key). Without that device it reads False and
    setting it is remembered here only (nothing to apply it to)."""

    def __init__(self, device_type, key):
        self.device_type, self.key = device_type.encode(), key.encode()
        self.local = False

    def _available(self):
        from . import cuda
        return self.device_type != b"cuda" or cuda.is_available()

    def __get__(self, obj, owner=None):
        if obj is None or not self._available():
            return self.local
        v = c_int64()
        _C.abi12("tsr_device_get_option", self.device_type, self.key, byref(v))
        return bool(v.value)

    def __set__(self, obj, value):
        self.local = bool(value)
        if self._available():
            _C.abi12("tsr_device_set_option", self.device_type, self.key, int(self.local))


_ALLOW_TF32 = _DeviceOption("cuda", "allow_tf32")


class _Matmul:
    allow_tf32 = _ALLOW_TF32


class _CudaBackend:
    def __init__(self):
        self.matmul = _Matmul()


class _CudnnBackend:
    allow_tf32 = _ALLOW_TF32  # the same switch as matmul's


cuda = _CudaBackend()
cudnn = _CudnnBackend()
