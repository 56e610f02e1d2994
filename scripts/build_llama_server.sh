#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (and `llama-quantize`) for CPU from the llama.cpp that
# the pinned llama-cpp-python sdist vendors, with the system's cmake and g++.
#
#   bash scripts/build_llama_server.sh                # build (or reuse) and print the bin dir
#   bash scripts/build_llama_server.sh --source-only  # only fetch the vendored source (the
#                                                     # GGUF converter needs it; no compile)
#   bash scripts/build_llama_server.sh --print-dir    # print the cache dir and exit
#   bash scripts/build_llama_server.sh --print-tag    # print this machine's build key
#   bash scripts/build_llama_server.sh --rebuild      # build again even if cached
#
# Everything lives outside the checkout, keyed by version (and by the CPU's instruction
# set, since the build is -march=native):
#   ${AGENT_ENVS_CACHE:-~/.cache/agent-envs}/llama.cpp/<version>/
#     llama_cpp_python-<version>.tar.gz   the sdist (sha256-checked)
#     src/                                its vendored llama.cpp (converter, gguf-py, sources)
#     <cpu-tag>/bin/llama-server          the binaries (static: no shared libraries to find)
#     <cpu-tag>/bin/llama-quantize
#     <cpu-tag>/BUILD_INFO                what was built, how, and how long it took
# A second call finds the binaries and returns at once. Environment:
#   AGENT_ENVS_CACHE     cache root (default ~/.cache/agent-envs)
#   LLAMA_BUILD_JOBS     parallel compile jobs (default: number of CPUs)
#   LLAMA_NICE           niceness of the compile (default 10: the machine is shared)
#   LLAMA_NATIVE         ON (default: -march=native, fastest) or OFF (portable binary)
#   PYTHON               a python with pip (default: .venv/bin/python, else python3)
set -euo pipefail

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

mode=build
case "${1:-}" in
    "") ;;
    --source-only) mode=source ;;
    --print-dir) mode=print ;;
    --print-tag) mode=tag ;;
    --rebuild) mode=rebuild ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "build_llama_server.sh: unknown argument '$1'; use --source-only, --print-dir, --print-tag," \
            "--rebuild or no argument (see --help)" >&2; exit 2 ;;
esac

root="${AGENT_ENVS_CACHE:-$HOME/.cache/agent-envs}/llama.cpp/$VERSION"
native="${LLAMA_NATIVE:-ON}"
if [[ "$native" == ON ]]; then
    # -march=native binaries are only valid on CPUs with the same instruction set
    # (trainers/export/llamacpp_dist.py computes the same tag: keep the two in step)
    flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | tr -s ' \t' '\n' \
            | grep -v '^$' | LC_ALL=C sort | paste -sd' ' || true)
    tag="native-$(printf '%s %s' "$(uname -m)" "$flags" | sha256sum | cut -c1-10)"
else
    tag="portable-$(uname -m)"
fi
bindir="$root/$tag/bin"

# No AMX: ggml's AMX matmul (Q4_0/Q8_0 weights on Sapphire Rapids and later) died with SIGILL
# on `tilezero` serving a tiny gpt-oss here, although a standalone AMX program runs; its
# AVX-512 kernels (weight repacking included) serve the same types.
cflags=""
amx="not advertised"
if [[ "$native" == ON ]] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    amx="left out"
fi
# The build's recipe: its digest is in BUILD_INFO, and a cached build made by another recipe
# (an older version of this script) is built again rather than used.
recipe=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE="$native"
        -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_NUMBER=0
        -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags")
recipe_id=$(printf '%s\n' "$VERSION" "${recipe[@]}" | sha256sum | cut -c1-12)

if [[ "$mode" == tag ]]; then
    echo "$tag"
    exit 0
fi
if [[ "$mode" == print ]]; then
    echo "$root"
    exit 0
fi
if [[ "$mode" == rebuild ]]; then
    mode=build
elif [[ "$mode" == build && -x "$bindir/llama-server" && -x "$bindir/llama-quantize" \
      && -f "$root/src/convert_hf_to_gguf.py" ]] \
      && grep -qx "recipe $recipe_id" "$root/$tag/BUILD_INFO" 2>/dev/null; then
    echo "[llama.cpp] cached: $bindir (llama-cpp-python $VERSION)" >&2
    echo "$bindir"
    exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9  # two builds at once would share one build tree

here=$(cd "$(dirname "$0")/.." && pwd)
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
    if [[ -x "$here/.venv/bin/python" ]]; then py="$here/.venv/bin/python"; else py=python3; fi
fi

sdist="$root/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$root/src/convert_hf_to_gguf.py" ]]; then
    if [[ ! -f "$sdist" ]] || ! echo "$SHA256  $sdist" | sha256sum -c --status; then
        echo "[llama.cpp] downloading the llama-cpp-python $VERSION sdist (~77 MB) with pip" >&2
        tmp=$(mktemp -d)
        # --no-build-isolation: pip must not build anything here, only fetch the archive
        "$py" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
            "llama-cpp-python==$VERSION" -d "$tmp" >&2 || \
        "$py" -m pip download --quiet --no-deps --no-binary :all: \
            "llama-cpp-python==$VERSION" -d "$tmp" >&2
        mv "$tmp/llama_cpp_python-$VERSION.tar.gz" "$sdist"
        rm -rf "$tmp"
    fi
    if ! echo "$SHA256  $sdist" | sha256sum -c --status; then
        echo "[llama.cpp] error: $sdist does not have sha256 $SHA256; delete it and rerun" >&2
        exit 1
    fi
    echo "[llama.cpp] extracting the vendored llama.cpp into $root/src" >&2
    rm -rf "$root/src" "$root/src.tmp"
    mkdir -p "$root/src.tmp"
    tar -xzf "$sdist" -C "$root/src.tmp" --strip-components=3 \
        "llama_cpp_python-$VERSION/vendor/llama.cpp"
    mv "$root/src.tmp" "$root/src"
fi
if [[ "$mode" == source ]]; then
    echo "$root/src"
    exit 0
fi

for tool in cmake g++ make; do
    if ! command -v "$tool" >/dev/null; then
        echo "[llama.cpp] error: '$tool' is not installed; on Debian/Ubuntu run:" \
             "sudo apt-get install -y cmake g++ make" >&2
        exit 1
    fi
done

jobs="${LLAMA_BUILD_JOBS:-$(nproc)}"
nice_n="${LLAMA_NICE:-10}"
build="$root/$tag/build"
echo "[llama.cpp] building llama-server + llama-quantize ($tag, AMX $amx, $jobs jobs, nice" \
     "$nice_n);" \
     "a cold build takes a while on few cores, progress below" >&2
start=$(date +%s)
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
nice -n "$nice_n" cmake -S "$root/src" -B "$build" "${generator[@]}" "${recipe[@]}" >&2
nice -n "$nice_n" cmake --build "$build" --target llama-server llama-quantize \
    -j "$jobs" >&2
mkdir -p "$bindir.tmp"
cp "$build/bin/llama-server" "$build/bin/llama-quantize" "$bindir.tmp/"
rm -rf "$bindir"
mv "$bindir.tmp" "$bindir"
secs=$(( $(date +%s) - start ))
{
    echo "llama-cpp-python $VERSION (sdist sha256 $SHA256)"
    echo "recipe $recipe_id"
    echo "tag $tag  native $native  jobs $jobs  nice $nice_n  AMX $amx"
    echo "compiler $(g++ --version | head -1)"
    echo "cmake $(cmake --version | head -1)"
    echo "built $(date -u +%FT%TZ) in ${secs} s on $(nproc) CPUs"
} > "$root/$tag/BUILD_INFO"
rm -rf "$build"  # the binaries are static; the ~1 GB build tree is not needed again
echo "[llama.cpp] built in ${secs} s: $bindir" >&2
echo "$bindir"
