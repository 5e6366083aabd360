"""Where and how a run computes: the device, the CPU threads, bf16 or fp32 by what the hardware does natively,
and the process's peak memory."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from schemas.training import TrainConfig

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class DeviceError(ValueError):
    """A device or precision setting this machine cannot honour; one clear line naming the key."""


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable."""
    import torch

    return torch.cuda.is_available()


def mps_available() -> bool:
    """Whether Apple's MPS backend is usable."""
    import torch

    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick_device(tc: TrainConfig) -> str:
    """The training device: the configured one, or CUDA > MPS > CPU for `auto`; QLoRA needs CUDA."""
    has_cuda, has_mps = cuda_available(), mps_available()
    device = tc.device
    if device == "auto":
        device = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    elif device == "cuda" and not has_cuda:
        raise DeviceError("train.device: cuda was asked for but no CUDA GPU is available (use auto or cpu)")
    elif device == "mps" and not has_mps:
        raise DeviceError("train.device: mps was asked for but Apple MPS is not available (use auto or cpu)")
    if tc.quantization == "4bit" and device != "cuda":
        raise DeviceError(
            f"train.quantization: 4bit (QLoRA, bitsandbytes) needs a CUDA GPU; this run trains on {device}. "
            "Set quantization: none"
        )
    return device


def cpu_threads(threads: int) -> int:
    """Threads for torch: `threads` when set, else (0) the cores this process may use."""
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux `/proc/cpuinfo`); empty where the file does not exist."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device: str, flags: set[str] | None = None) -> bool:
    """Whether `device` computes bf16 matmuls natively: a CUDA GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    if device == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    if device == "cpu":
        return any(f in (cpu_flags() if flags is None else flags) for f in CPU_BF16_FLAGS)
    return False


def use_bf16(precision: str, device: str, native: bool) -> bool:
    """bf16 mixed precision: as configured, or (`auto`) where the device does bf16 natively; fp32 elsewhere."""
    if precision == "auto":
        return native
    if precision == "bf16" and device == "mps":
        raise DeviceError("train.precision: bf16 is not supported on mps here; use auto or fp32")
    return precision == "bf16"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (children not included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 1024, 1)
