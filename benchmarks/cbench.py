"""Builds and runs the C programs of benchmarks/c/ for the suite (benchmarks/suite.py).

They are compiled on the fly with the system C compiler, into a temporary directory, against the
shmcomm.h and the libshm that the shmcomm Python package loads (SHMCOMM_LIBRARY, or the library
inside the installed package), so the C numbers and the Python numbers come from the same build.

  floors pingpong  one-way latency over one shared cache line (and over two, one per direction)
  floors memcpy    single-thread memcpy bandwidth of the frame sizes
  shmc_bench       shmcomm C to C: 64-byte ping-pong latency, throughput (single and batch calls)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
C_DIR = HERE / "c"


class CBuildError(Exception):
    pass


def _shmcomm_paths():
    """(include dir, library path) of the libshm the Python package uses."""
    import shmcomm

    pkg = Path(shmcomm.__file__).resolve().parent
    lib = os.environ.get("SHMCOMM_LIBRARY")
    lib_path = Path(lib) if lib else next((pkg / n for n in ("libshm.so", "libshm.so.0", "libshm.dylib")
                                           if (pkg / n).exists()), None)
    if lib_path is None or not lib_path.exists():
        raise CBuildError(f"cannot find the libshm that shmcomm loads (looked in {pkg}, SHMCOMM_LIBRARY)")
    for inc in (HERE.parent / "include", pkg / "include"):
        if (inc / "shmcomm.h").exists():
            return inc, lib_path
    raise CBuildError("cannot find shmcomm.h (repository include/ or the package's include/)")


class CPrograms:
    """Compiles floors.c and shmc_bench.c once; run() returns each program's JSON result."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="shmbench-c-"))
        self.floors = self.shmc = None
        self.errors = {}
        self.compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if self.compiler is None:
            self.errors["floors"] = self.errors["shmc"] = "no C compiler (cc or gcc) on PATH"
            return
        flags = ["-O2", "-std=c11", "-D_GNU_SOURCE"]
        try:
            self.floors = self._cc("floors", [str(C_DIR / "floors.c")] + flags)
        except CBuildError as e:
            self.errors["floors"] = str(e)
        try:
            inc, lib = _shmcomm_paths()
            self.shmc = self._cc("shmc_bench", [str(C_DIR / "shmc_bench.c"), *flags, f"-I{inc}", str(lib),
                                                f"-Wl,-rpath,{lib.parent}"])
            self.library = str(lib)
        except CBuildError as e:
            self.errors["shmc"] = str(e)

    def _cc(self, name, args):
        out = self.dir / name
        proc = subprocess.run([self.compiler, "-o", str(out), *args], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode:
            raise CBuildError(f"{name}: {proc.stderr.strip()[:500]}")
        return out

    def run(self, program: str, args: list, timeout: float) -> dict:
        exe = self.floors if program == "floors" else self.shmc
        if exe is None:
            return {"ok": False, "error": self.errors.get("floors" if program == "floors" else "shmc")}
        try:
            proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            return {"ok": False, "error": f"exit {proc.returncode}: {proc.stderr.strip()[:300]}"}
        r = json.loads(lines[-1])
        r.setdefault("ok", proc.returncode == 0)
        return r

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
