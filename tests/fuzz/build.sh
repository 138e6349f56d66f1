#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz/ with clang, ASan and UBSan, into OUTDIR:
#   OUTDIR/fuzz_segment   live segments patched by the input while endpoints use them
#   OUTDIR/fuzz_raw       segments made entirely of the input bytes
#
#   tests/fuzz/build.sh OUTDIR
#
# The library's sources are compiled into each target (they reach the internal headers, and the
# library gets coverage instrumentation too). CC may name the clang to use; otherwise clang, then
# clang-19 .. clang-14 are tried. Exits 2 with the Debian packages to install when clang or its
# libFuzzer/sanitizer runtime is missing.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 64
fi
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

missing() {
    echo "build.sh: $1" >&2
    echo "build.sh: the fuzz targets need clang with its libFuzzer and sanitizer runtimes." >&2
    echo "build.sh: on Debian/Ubuntu:  apt-get install clang libclang-rt-${2:-14}-dev" >&2
    echo "build.sh: (libclang-rt-N-dev, matching clang-N, holds libclang_rt.fuzzer/asan/ubsan;" >&2
    echo "build.sh:  'apt-get install --no-install-recommends clang' alone does not bring it)" >&2
    exit 2
}

CLANG=""
for c in ${CC:-} clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
    if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -qi clang; then
        CLANG=$(command -v "$c")
        break
    fi
done
[ -n "$CLANG" ] || missing "clang not found (on PATH, or CC=...)"
MAJOR=$("$CLANG" --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SANITIZE="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"

# Can this clang link a fuzzer with both sanitizers? (Debian splits the runtimes into a package of their own.)
PROBE="$OUT/.probe.c"
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$PROBE"
if ! "$CLANG" $SANITIZE "$PROBE" -o "$OUT/.probe" > "$OUT/.probe.log" 2>&1; then
    cat "$OUT/.probe.log" >&2
    rm -f "$PROBE" "$OUT/.probe" "$OUT/.probe.log"
    missing "$CLANG cannot link -fsanitize=fuzzer,address,undefined (runtime missing: $("$CLANG" -print-resource-dir)/lib)" "$MAJOR"
fi
rm -f "$PROBE" "$OUT/.probe" "$OUT/.probe.log"

LIBSHM="$REPO/libshm/core.c
$REPO/libshm/primitives/name.c
$REPO/libshm/primitives/waitword.c
$REPO/libshm/primitives/registry.c
$REPO/libshm/primitives/ring.c
$REPO/libshm/primitives/channel.c
$REPO/libshm/primitives/endpoint.c
$REPO/libshm/primitives/writer.c
$REPO/libshm/primitives/reader.c
$REPO/libshm/patterns/pubsub.c
$REPO/libshm/patterns/pipeline.c
$REPO/libshm/patterns/reqrep.c
$REPO/libshm/patterns/stream.c
$REPO/libshm/platform/posix.c"

CFLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -D_GNU_SOURCE -DSHMC_BUILDING
        -I$REPO/include -I$REPO/libshm"
# Every shared mapping the library makes gets guard pages (see fuzz_segment.c).
LDFLAGS="-Wl,--wrap=mmap -Wl,--wrap=munmap -lpthread -lrt"

build() {
    target=$1
    shift
    # shellcheck disable=SC2086 # word splitting of the flag and source lists is intended
    "$CLANG" $SANITIZE $CFLAGS "$@" $LIBSHM "$HERE/fuzz_segment.c" $LDFLAGS -o "$OUT/$target"
    echo "built $OUT/$target"
}

build fuzz_segment
build fuzz_raw -DFUZZ_RAW
