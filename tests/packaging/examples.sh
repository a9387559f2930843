#!/usr/bin/env bash
# The examples' packaging test (ctest -L packaging): installs a dpool build tree into a
# temporary prefix, as run.sh does, configures and builds examples/ as an outside project
# against it (find_package(dpool) from the prefix, nothing from the source tree), and runs
# the programs with tests/packaging/check_examples.sh, which checks their output against
# wc -c, md5sum and arithmetic. Every step is bounded by `timeout` (all together below
# ctest's limit); the temporary directory is removed.
#
#   examples.sh BUILD_DIR EXAMPLES_SOURCE_DIR CMAKE CXX_COMPILER GENERATOR SANITIZERS NAME...
#
# NAME: the examples to run (see check_examples.sh); SANITIZERS may be empty.
set -euo pipefail
build_dir=$1 examples_src=$2 cmake=$3 cxx=$4 generator=$5 sanitize=$6
shift 6
here=$(cd "$(dirname "$0")" && pwd)
source_root=$(cd "$examples_src/.." && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/dpool-pkg-examples.XXXXXX")
prefix=$work/prefix
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
step() { echo "packaging examples: $*"; }
fail() { echo "packaging examples: $*" >&2; exit 1; }

step "installing $build_dir into $prefix"
timeout 30 "$cmake" --install "$build_dir" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "install failed"; }

step "configuring $examples_src against the prefix"
flags=()
# A sanitized dpool's static libraries need the sanitizer's runtime in whatever links them.
[ -n "$sanitize" ] && flags+=("-DCMAKE_CXX_FLAGS=-fsanitize=$sanitize")
timeout 60 "$cmake" -S "$examples_src" -B "$work/examples" -G "$generator" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "${flags[@]}" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configuring failed"; }
grep -q "dpool .* from $prefix/" "$work/configure.log" || { cat "$work/configure.log"; fail "dpool was not found in $prefix"; }

step "building it"
# Four programs, each compiling the Pool templates: the slowest step of the test.
timeout 400 "$cmake" --build "$work/examples" -j2 >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "building failed"; }
# dpool's headers must come from the prefix: an include path into the source tree would let
# a broken install pass unnoticed. (-I: binaries name the sources of the installed libraries
# in their debug information, rightly.)
if grep -rIqsE -- "$source_root/(shared|worker|client|broker)/include" "$work/examples"; then
  fail "the outside build used dpool's source tree: $(grep -rIlsE -- "$source_root/(shared|worker|client|broker)/include" "$work/examples" | head -3)"
fi

step "running $* from the outside build"
bash "$here/check_examples.sh" "$work/examples" "$prefix/bin/dpool-broker" "$prefix/bin/dpool-worker" "$@"
