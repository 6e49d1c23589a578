"""The machine facts a benchmark is published with, on each kind of CPU the project runs on."""

from __future__ import annotations

import pytest

from focalinfer.bench.machine import machine_info


@pytest.mark.parametrize("kind, isa", [
    ("intel-amx", ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]),
    ("intel-avx512", ["avx2", "fma", "avx512f", "avx512_vnni"]),
    ("amd-avx512", ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]),
    ("amd-avx2", ["avx2", "fma"]),
])
def test_machine_info_names_the_cpu_and_the_vector_extensions_its_kernels_use(cpu_kind, kind, isa):
    model = cpu_kind(kind).model
    info = machine_info(threads=2)
    assert info["cpu"] == model and info["cpu_vector_isa"] == isa and info["threads"] == 2
