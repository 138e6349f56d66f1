"""The cffi binding: its cdef is the public header, so every exported shmc_ symbol is declared there
and every declared function resolves; versions agree; a bad SHMCOMM_LIBRARY fails loudly."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Set

import pytest

import shmcomm
from shmcomm import _binding

from naming import REPO
from procs import child_env


def loaded_library() -> Path:
    """The libshm this process actually mapped (whatever the binding chose)."""
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and re.search(r"/libshm[^/]*\.so", fields[5]):
                paths.add(fields[5].strip())
    assert len(paths) == 1, f"expected one libshm mapped, found {paths}"
    return Path(paths.pop())


def exported_symbols(library: Path) -> List[tuple]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.fail("nm (binutils) is needed to list the library's exported symbols", pytrace=False)
    out = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    symbols = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            symbols.append((parts[1], parts[2].split("@")[0]))
    return symbols


def declared_functions(cdef: str) -> Set[str]:
    return set(re.findall(r"\b(shmc_\w+)\s*\(", cdef))


def test_the_binding_reads_the_repository_header() -> None:
    """The installed copy of the header (the cdef) is the repository's header, byte for byte."""
    assert _binding.HEADER_PATH.read_bytes() == (REPO / "include" / "shmcomm.h").read_bytes()


@pytest.mark.parametrize("which", ["loaded", "c_build"])
def test_every_exported_symbol_is_declared_in_the_cdef(which: str, request: pytest.FixtureRequest) -> None:
    library = loaded_library() if which == "loaded" else request.getfixturevalue("c_build") / "libshm.so"
    symbols = exported_symbols(library)
    # Only shmc_ names leave the library (the version node, type A, is not a symbol of code).
    assert [name for kind, name in symbols if kind != "A" and not name.startswith("shmc_")] == []
    exported = {name for kind, name in symbols if kind in "TtWi" and name.startswith("shmc_")}
    assert exported, f"no shmc_ functions exported by {library}"
    declared = declared_functions(_binding.read_cdef(_binding.HEADER_PATH))
    assert exported - declared == set(), "exported by libshm but missing from the header's cdef section"


def test_every_declared_function_resolves() -> None:
    declared = declared_functions(_binding.read_cdef(_binding.HEADER_PATH))
    assert len(declared) >= 20
    missing = []
    for name in sorted(declared):
        try:
            assert callable(getattr(_binding.lib, name))
        except AttributeError:
            missing.append(name)
    assert missing == [], f"declared in shmcomm.h but not in {loaded_library()}"


def test_every_public_function_is_in_the_cdef_section() -> None:
    header = (REPO / "include" / "shmcomm.h").read_text()
    everywhere = set(re.findall(r"SHMC_API\s+[\w\s\*]+?\b(shmc_\w+)\s*\(", header))
    in_cdef = declared_functions(_binding.read_cdef(REPO / "include" / "shmcomm.h"))
    assert everywhere == in_cdef


def test_cdef_parses_without_the_export_macro() -> None:
    cdef = _binding.read_cdef(_binding.HEADER_PATH)
    assert "SHMC_API" not in cdef and "#include" not in cdef
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)  # a fresh FFI accepts it as it is
    assert ffi.sizeof("shmc_pub_options_t") == _binding.ffi.sizeof("shmc_pub_options_t")


def test_versions_agree() -> None:
    header = (REPO / "include" / "shmcomm.h").read_text()
    header_version = int(re.search(r"#define SHMC_VERSION (0x[0-9a-fA-F]+)", header).group(1), 16)
    loaded = _binding.lib.shmc_version()
    assert loaded == header_version == _binding.EXPECTED_VERSION
    text = f"{loaded >> 16}.{(loaded >> 8) & 255}.{loaded & 255}"
    assert shmcomm.library_version() == text
    project = re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text()).group(1)
    assert text == project == shmcomm.__version__
    layout = int(re.search(r"#define SHMC_LAYOUT_VERSION (\d+)", header).group(1))
    assert _binding.lib.SHMC_LAYOUT_VERSION == layout


def test_error_messages_for_every_code() -> None:
    codes = [getattr(_binding.lib, n) for n in dir(_binding.lib) if re.fullmatch(r"SHMC_E[A-Z]+", n)]
    assert len(codes) >= 18
    messages = {code: _binding.strerror(code) for code in codes}
    assert all(messages.values())
    assert len(set(messages.values())) == len(codes), "two error codes share a message"
    assert _binding.strerror(-9999)  # unknown codes still get a message


def _import_with(env_library: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import shmcomm"], capture_output=True, text=True,
                          timeout=60, env=child_env({"SHMCOMM_LIBRARY": env_library}))


def test_missing_library_gives_an_import_error_listing_what_was_tried(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "libshm.so"
    proc = _import_with(str(missing))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), proc.stderr
    assert str(missing) in last and "missing" in last and "SHMCOMM_LIBRARY" in last


def test_a_file_that_is_not_a_library_gives_an_import_error(tmp_path: Path) -> None:
    fake = tmp_path / "libshm.so"
    fake.write_text("not an ELF file")
    proc = _import_with(str(fake))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and str(fake) in last, proc.stderr


def test_shmcomm_library_override_loads_that_library(c_build: Path) -> None:
    library = c_build / "libshm.so"
    code = ("import re, shmcomm; print([l.split()[-1] for l in open('/proc/self/maps') "
            "if re.search(r'/libshm[^/]*[.]so', l)][0]); print(shmcomm.library_version())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=child_env({"SHMCOMM_LIBRARY": str(library)}))
    assert proc.returncode == 0, proc.stderr
    mapped, version = proc.stdout.split()
    assert Path(mapped).resolve() == library.resolve()
    assert version == shmcomm.library_version()


def test_the_wheel_installs_every_module_of_the_package() -> None:
    """meson.build lists the package's files one by one (meson-python installs only those): a module
    missing there imports from the source tree and fails in every installed wheel."""
    listed = set(re.findall(r"'python/shmcomm/([^']+)'", (REPO / "meson.build").read_text()))
    on_disk = {p.name for p in (REPO / "python" / "shmcomm").iterdir()
               if p.suffix == ".py" or p.name == "py.typed"}
    assert on_disk - listed == set(), f"add these to py.install_sources in meson.build: {sorted(on_disk - listed)}"
    assert listed - on_disk == set(), f"meson.build lists files that do not exist: {sorted(listed - on_disk)}"
