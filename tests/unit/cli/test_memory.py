"""``epspp.cli.memory``: large freed blocks kept for reuse (no page faults on the next one), the opt-out, and the
console script's process only.  Each case runs in a subprocess: the settings are for a whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from epspp.cli import memory

# 4 passes over a new 64-MiB block of the C allocator (over glibc's 32-MiB mmap ceiling), each written whole then
# freed: the minor page faults of passes 2-4 (16,384 pages of 4 KiB per pass when the block is unmapped at each
# free, ~0 when it is kept)
PASSES = """
import ctypes, json, resource, sys
from epspp.cli.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "call" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 * 2**20)
    ctypes.memset(block, 1, 64 * 2**20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults[1:]}))
"""
PAGES = 64 * 2**20 // 4096


def _passes(call: bool, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PASSES, "call" if call else "skip"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_block_is_reused_without_page_faults() -> None:
    default = _passes(call=False)
    kept = _passes(call=True)
    assert all(faults >= PAGES for faults in default["faults"]), default  # unmapped at each free: faulted anew
    assert kept["kept"] is True and all(faults < PAGES // 100 for faults in kept["faults"]), kept


@pytest.mark.parametrize("value", ["1", "true", "YES "])
def test_the_opt_out_leaves_the_allocator_alone(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.DEFAULT_MALLOC_ENV, value)
    assert memory.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_opt_out_in_a_process_keeps_the_page_faults() -> None:
    opted_out = _passes(call=True, **{memory.DEFAULT_MALLOC_ENV: "1"})
    assert opted_out["kept"] is False and all(faults >= PAGES for faults in opted_out["faults"]), opted_out


def test_only_the_console_script_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import epspp.cli

    calls: list[bool] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(True) or True)
    monkeypatch.setattr(epspp.cli, "run_lightning_cli", lambda *args: None)
    epspp.cli.run_command_line(["fit", "--print_config"])  # a caller's process (tests, a notebook): untouched
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["epspp", "fit", "--print_config"])
    epspp.cli.run_command_line(None)
    assert calls == [True]


def test_the_glibc_constants_are_malloc_hs() -> None:
    # glibc's malloc.h: #define M_TRIM_THRESHOLD -1, #define M_MMAP_MAX -4; mallopt takes an int
    assert (memory.M_TRIM_THRESHOLD, memory.M_MMAP_MAX, memory.KEPT_BYTES) == (-1, -4, 2147483647)
