"""What the machine can compute fast, and the settings that follow from it at run time.

A config tuned on one machine must not carry that machine's hardware into the next: ``engine.dtype: auto`` and
``optim.precision: auto`` become bfloat16 only where the processor computes it natively. A CPU without
AVX-512 BF16 or AMX (many AMD and Intel machines have AVX2 only) emulates bfloat16 through float32: 32 augment
prompts of SmolLM2 took 181 s in bfloat16 against 43 s in float32 on such a machine (issue 23).

``choose_dtype`` is the one decision, a pure function of a ``Device`` (flags and GPU capability), so it is
tested with any machine's facts; ``this_device`` reads the facts of the machine it runs on.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Literal

DTYPES = ("auto", "bfloat16", "float16", "float32")  # engine.dtype values; auto: choose_dtype
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of bf16 dot products in hardware
BF16_CUDA_CAPABILITY = (8, 0)  # Ampere: the first GPUs with bf16 tensor cores (torch.cuda.is_bf16_supported)
VALUE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class Device:
    """The facts ``choose_dtype`` decides on: the processor's flags and, on a GPU, its name and capability."""

    kind: Literal["cpu", "cuda"] = "cpu"
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda_name: str = ""
    cuda_capability: tuple[int, int] | None = None


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # bfloat16 | float16 | float32
    reason: str

    def describe(self) -> str:
        """One line for the console and the run summary."""
        return f"dtype {self.dtype}: {self.reason}"


def choose_dtype(requested: str, device: Device) -> DtypeChoice:
    """The dtype to compute in: ``requested`` unless it is ``auto``, which takes bfloat16 where the device has it
    natively, else float16 on a GPU (its tensor cores run it; float32 would be several times slower) and float32
    on a CPU (whose float16, like its bfloat16, would be emulated without AVX-512 FP16 / AMX)."""
    if requested not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {requested!r}")
    if requested != "auto":
        emulated = device.kind == "cpu" and requested == "bfloat16" and not native_bf16(device)
        note = " (this CPU has no native bf16: emulated, several times slower than float32)" if emulated else ""
        return DtypeChoice(requested, f"set in the config{note}")
    if device.kind == "cuda":
        capability = ".".join(map(str, device.cuda_capability or ("unknown",)))
        gpu = f"GPU {device.cuda_name or 'cuda'} (compute capability {capability})"
        if device.cuda_capability is not None and device.cuda_capability >= BF16_CUDA_CAPABILITY:
            return DtypeChoice("bfloat16", f"{gpu} has native bf16")
        return DtypeChoice("float16", f"{gpu} has no bf16 (before 8.0); float16 runs on its tensor cores")
    found = sorted(device.cpu_flags & NATIVE_BF16_FLAGS)
    if found:
        return DtypeChoice("bfloat16", f"CPU has native bf16 ({'/'.join(found)})")
    return DtypeChoice("float32", f"CPU has no native bf16 ({'/'.join(sorted(NATIVE_BF16_FLAGS))} absent)")


def native_bf16(device: Device) -> bool:
    return choose_dtype("auto", device).dtype == "bfloat16"


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in the text of /proc/cpuinfo (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def this_device(gpu: tuple[str, tuple[int, int]] | None = None) -> Device:
    """The facts of this machine: its CPU's flags, and the GPU its caller found (name and compute capability, as
    torch or vLLM report them; None: no GPU). This module imports neither: it is the pure core's."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = cpu_flags(f.read())
    except OSError:  # not Linux: no way to tell, and emulated bf16 is the costly mistake
        flags = frozenset()
    if gpu is None:
        return Device("cpu", flags)
    name, capability = gpu
    return Device("cuda", flags, name, tuple(capability))


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container's or taskset's limit, not the host's)."""
    if sys.platform.startswith("linux"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
