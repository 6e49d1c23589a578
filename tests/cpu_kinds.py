"""The kinds of CPU the project's machines have been, as ``focalinfer.machine`` reads them.

The machines that build and test the project change CPU from one day to the next, so a test of a
rule that depends on the CPU stands in each kind with the ``cpu_kind`` fixture (tests/conftest.py)
and checks the rule on every kind, whatever CPU runs it. Each kind's facts are written here, from
its /proc/cpuinfo (the flags that matter to the runtimes), not computed by the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_FLAGS = frozenset({"sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"})
AVX512_FLAGS = frozenset({"avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_vnni"})


@dataclass(frozen=True)
class CpuKind:
    model: str
    flags: frozenset[str]
    native_bf16: bool  # OpenVINO's CPU plugin computes bf16 natively (AVX-512 BF16 or AMX)


CPU_KINDS = {
    # Sapphire Rapids: AVX-512 with BF16 and FP16, and AMX tiles
    "intel-amx": CpuKind("Intel(R) Xeon(R) Platinum 8488C", BASE_FLAGS | AVX512_FLAGS | {
        "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8"}, native_bf16=True),
    # Cascade Lake: AVX-512 without BF16
    "intel-avx512": CpuKind("Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz", BASE_FLAGS | AVX512_FLAGS,
                            native_bf16=False),
    # Zen 4 (this project's machine of issue 19): AVX-512 with BF16, no AMX
    "amd-avx512": CpuKind("AMD EPYC 9R14 96-Core Processor", BASE_FLAGS | AVX512_FLAGS | {
        "avx512_bf16", "avx512ifma", "avx512vbmi"}, native_bf16=True),
    # Zen 3: AVX2 only
    "amd-avx2": CpuKind("AMD EPYC 7R13 Processor", BASE_FLAGS, native_bf16=False),
}
NATIVE_BF16 = sorted(name for name, kind in CPU_KINDS.items() if kind.native_bf16)
NO_NATIVE_BF16 = sorted(name for name, kind in CPU_KINDS.items() if not kind.native_bf16)
