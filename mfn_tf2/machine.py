"""The machine a figure was measured on: CPU model, its int8/bf16 instructions, cores, versions.

int8 inference is only faster than fp32 where the CPU has fast int8 dot
products: x86 VNNI (AVX-512 VNNI or AVX-VNNI) or ARM's dotprod/i8mm. On an
AVX2-only x86 the same int8 model can be slower than fp32 at batch 1, so
every latency figure the kit prints names these instructions beside it; and
``recognizer.set_precision("auto")`` picks bfloat16 only where the CPU has
bf16 arithmetic. ``/proc/cpuinfo`` is read here and nowhere else.

Example:
    >>> describe_isa({"avx2", "avx512_vnni", "avx512_bf16"})
    'int8: AVX-512 VNNI; bf16: AVX-512 BF16'
    >>> describe_isa({"avx2", "fma"})
    'int8: AVX2 only (no VNNI); bf16: none'
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform

from mfn_tf2.allocator import malloc_in_use

# /proc/cpuinfo flag -> name, for int8 dot products and bf16 arithmetic.
INT8_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
              "asimddp": "ARM dotprod", "i8mm": "ARM i8mm"}


BF16_FLAGS = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16", "bf16": "ARM bf16"}


# Packages whose versions reports name (distribution names).
PACKAGES = ("tensorflow", "tf-keras", "ai-edge-litert", "tensorflow-model-optimization", "numpy")


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The fields of the first processor of /proc/cpuinfo (empty where there is none).

    Returns:
        {field: value}, e.g. "model name" and "flags" (x86) or "Features" (ARM).

    Example:
        >>> isinstance(cpuinfo(), dict)
        True
    """
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:  # the end of the first processor's block
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """The feature flags of this CPU (x86 "flags" or ARM "Features" of /proc/cpuinfo).

    Example:
        >>> isinstance(cpu_flags(), set)
        True
    """
    info = cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def describe_isa(flags: set[str]) -> str:
    """One line naming the int8 and bf16 instructions among ``flags``.

    Args:
        flags: CPU feature flags as /proc/cpuinfo spells them.

    Returns:
        e.g. "int8: AVX-512 VNNI, AMX-INT8; bf16: AVX-512 BF16", or
        "int8: AVX2 only (no VNNI); bf16: none".
    """
    int8 = [name for flag, name in INT8_FLAGS.items() if flag in flags]
    bf16 = [name for flag, name in BF16_FLAGS.items() if flag in flags]
    if not int8:
        int8 = ["AVX2 only (no VNNI)"] if "avx2" in flags else ["none known"]
    return f"int8: {', '.join(int8)}; bf16: {', '.join(bf16) or 'none'}"


def has_bf16() -> bool:
    """True when this CPU has bfloat16 arithmetic (any of ``BF16_FLAGS``).

    Example:
        >>> has_bf16() == bool(cpu_flags() & set(BF16_FLAGS))
        True
    """
    return bool(cpu_flags() & set(BF16_FLAGS))


def machine_info() -> dict:
    """CPU model, its int8/bf16 instructions, cores, load, package versions and malloc in use.

    Example:
        >>> sorted(machine_info())
        ['cores', 'cpu', 'isa', 'load_average', 'malloc', 'usable_cores', 'versions']
    """
    cpu = cpuinfo().get("model name") or platform.processor() or platform.machine()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu, "isa": describe_isa(cpu_flags()), "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "load_average": [round(v, 2) for v in os.getloadavg()], "versions": versions,
            "malloc": malloc_in_use()}


def machine_line(info: dict) -> str:
    """One line for a report: CPU, instructions, cores.

    Example:
        >>> machine_line({"cpu": "AMD EPYC", "isa": "int8: AVX2 only (no VNNI); bf16: none", "cores": 2})
        'AMD EPYC (int8: AVX2 only (no VNNI); bf16: none), 2 cores'
    """
    return f"{info['cpu']} ({info['isa']}), {info['cores']} cores"
