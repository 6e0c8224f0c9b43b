"""What this machine computes fast: its CPU model, the instruction sets that decide the bf16 rate,
and the measured matrix-product peak.

The project's machines change from day to day (an Intel Xeon with AMX: bf16 products much faster than
fp32; an AMD Zen 3 without native bf16: much *slower*; an AMD Zen 4 with AVX512-BF16: faster;
docs/performance.md, "bf16 measured per machine and shape"), so nothing here is hard-coded:
:func:`cpu_facts` reads ``/proc/cpuinfo`` and asks oneDNN, :func:`matmul_peak` measures.
:func:`isa_class` names the class of machine the cost tables are keyed by.
"""

from __future__ import annotations

import platform
import time
from functools import lru_cache
from pathlib import Path

import torch

#: the flags that decide the fp32 and bf16 matrix-product rates
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: the best matrix-product unit first: cpuinfo flag -> the name in :func:`isa_class`
_UNITS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def native_bf16_cpu() -> bool:
    """oneDNN's own check: bf16 products run on AVX512-BF16 or AMX units, not emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_facts() -> dict[str, object]:
    """The CPU model, the instruction sets of :data:`ISA_FLAGS`, torch's CPU capability and oneDNN's
    bf16 check (one JSON-serialisable dict, printed beside every benchmark figure)."""
    model, flags = _cpuinfo()
    return {"cpu": model, "isa": {f: f in flags for f in ISA_FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_bf16": native_bf16_cpu(), "isa_class": isa_class()}


def isa_class(flags: frozenset[str] | None = None, arch: str | None = None) -> str:
    """The class of machine the measured rates are keyed by (``cost_measurements.json``): the
    architecture and the best unit for matrix products, e.g. ``x86_64-amx``, ``x86_64-avx512_bf16``,
    ``x86_64-avx512``, ``x86_64-avx2``."""
    flags = _cpuinfo()[1] if flags is None else flags
    arch = arch or platform.machine()
    for flag, unit in _UNITS:
        if flag in flags:
            return f"{arch}-{unit}"
    return arch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), e.g. ``Intel(R) Xeon(R) Processor``."""
    return _cpuinfo()[0]


def cpu_description() -> str:
    """One line for a result's provenance: the CPU model and its class, e.g.
    ``Intel(R) Xeon(R) Processor (x86_64-amx)``."""
    return f"{_cpuinfo()[0]} ({isa_class()})"


def matmul_peak(dtype: torch.dtype, n: int = 2048, rounds: int = 5) -> float:
    """GFLOP/s of an ``n x n`` matrix product in ``dtype`` (best of ``rounds``), the better of the two
    operand layouts ``a @ b`` and ``a @ b.T`` (nn.Linear's; without AVX512-BF16 or AMX, CPU bf16
    products take a slow path that depends on the layout, one layout far slower than the other;
    docs/performance.md, "matmul_peak: the better of two layouts")."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = float("inf")
    for product in (lambda: a @ b, lambda: a @ b.t()):
        product()
        for _ in range(rounds):
            t = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9
