#!/usr/bin/env bash
# What can be checked of docker/ without Docker: that the Dockerfile, .dockerignore, the compose
# file and its YAML still agree with the project they package. Each check is a way the image
# has broken, or would, that only a `docker build` or a container start would otherwise show:
#   1. every file the Dockerfile COPYs exists and is in the build context, and no source file
#      (C++, CMake) is left out of the context by .dockerignore;
#   2. every shared library the binaries of this build load comes, in the runtime stage, from
#      the base image or from a package the Dockerfile installs (dpkg says which package holds
#      each one; a Debian system is needed for that, else this part is skipped);
#   3. the build-tree files the Dockerfile takes (the example plugin) exist at the same place
#      in this build tree, the programs the compose file runs are among the targets the
#      Dockerfile builds, and the plugin path in dpool.yaml is one the Dockerfile installs.
#
#   check_files.sh SOURCE_DIR BUILD_DIR BINARY...
# The words looped over are paths and names matched by [A-Za-z0-9_./-]: no spaces to split on.
# shellcheck disable=SC2013,SC2016
set -euo pipefail
src=$1 build=$2
shift 2
binaries=("$@")
dockerfile=$src/docker/Dockerfile
compose=$src/docker/docker-compose.yml
yaml=$src/docker/dpool.yaml
fail=0
problem() { echo "docker files: $*" >&2; fail=1; }

# The Dockerfile's instructions one a line, continuations joined, comments dropped.
instructions=$(sed -e '/^[[:space:]]*#/d' "$dockerfile" | sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}')

# ---- 1. The build context ---------------------------------------------------------------
# .dockerignore patterns as anchored regular expressions: `*` and `?` stay within one path
# component, `**` spans any number; a pattern also excludes everything under what it matches.
patterns=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  line=$(sed -e 's/[[:space:]]*$//' -e 's#^/##' -e 's#/$##' <<<"$line")
  [ -z "$line" ] && continue
  patterns+=("$line")
done <"$src/.dockerignore"
regex_of() {
  sed -e 's/[.+^$(){}|]/\\&/g' -e 's#\*\*/#\x01#g' -e 's#\*\*#\x02#g' -e 's#\*#[^/]*#g' -e 's#?#[^/]#g' \
      -e 's#\x01#(.*/)?#g' -e 's#\x02#.*#g' <<<"$1"
}
regexes=()
for p in "${patterns[@]}"; do regexes+=("^$(regex_of "${p#!}")(/.*)?\$"); done
ignored() {  # ignored PATH (relative to the context): the last matching pattern decides
  local path=$1 verdict=1 i
  for i in "${!patterns[@]}"; do
    if [[ $path =~ ${regexes[$i]} ]]; then
      if [[ ${patterns[$i]} == !* ]]; then verdict=1; else verdict=0; fi
    fi
  done
  return $verdict
}

while read -r copy; do
  read -ra words <<<"$copy"
  [[ " ${words[*]} " == *" --from="* ]] && continue
  sources=()
  for w in "${words[@]:1:${#words[@]}-2}"; do [[ $w == --* ]] || sources+=("$w"); done
  for s in "${sources[@]}"; do
    s=${s#./}
    if [ "$s" = "." ]; then continue; fi
    [ -e "$src/$s" ] || problem "the Dockerfile copies $s, which does not exist"
    ignored "$s" && problem "the Dockerfile copies $s, which .dockerignore leaves out of the context"
  done
done < <(grep -E '^COPY[[:space:]]' <<<"$instructions" || true)

while IFS= read -r f; do
  f=${f#./}
  ignored "$f" && problem ".dockerignore leaves $f out of the build context, which the image's build needs"
done < <(cd "$src" && find . \( -path './build*' -o -path './.git' \) -prune -o -type f \
           \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name 'CMakeLists.txt' -o -name '*.cmake' \
              -o -name '*.in' \) -print)

# ---- 2. Runtime libraries ---------------------------------------------------------------
# The runtime stage is the last FROM; its packages are the words after `apt-get install`.
runtime=$(awk '/^FROM /{stage = ""} {stage = stage $0 "\n"} END {printf "%s", stage}' <<<"$instructions")
packages=$(grep -oE 'apt-get install[^&]*' <<<"$runtime" | sed 's/apt-get install//' | tr ' ' '\n' | grep -E '^[a-z0-9]' || true)
[ -n "$packages" ] || problem "found no apt-get install in the Dockerfile's runtime stage"
# What debian:bookworm-slim already has that a C++ program loads.
packages+=$'\nlibc6\nlibstdc++6\nlibgcc-s1'
if command -v dpkg-query >/dev/null && [ -f /etc/debian_version ]; then
  package_of() {  # package_of PATH: the Debian package holding the file, whichever /usr-merged name it is listed under
    local p candidates=("$1" "$(readlink -f "$1")")
    for p in "${candidates[@]}"; do
      candidates+=("${p#/usr}" "/usr${p#/usr}")
    done
    for p in "${candidates[@]}"; do
      dpkg-query -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
    done
    return 1
  }
  for bin in "${binaries[@]}"; do
    [ -e "$bin" ] || { problem "$bin was not built"; continue; }
    deps=$(ldd "$bin")
    for lib in $(objdump -p "$bin" | awk '$1 == "NEEDED" {print $2}'); do
      case $lib in lib[alt]san.so* | libubsan.so* | libhwasan.so*) continue ;; esac  # sanitized builds only
      path=$(awk -v l="$lib" '$1 == l && $2 == "=>" {print $3}' <<<"$deps")
      [ -n "$path" ] || { [[ $lib == ld-linux* ]] && continue; problem "$(basename "$bin") needs $lib, which ldd cannot find"; continue; }
      if ! pkg=$(package_of "$path"); then
        problem "$(basename "$bin") loads $path, which no Debian package holds: the image would not have it"
        continue
      fi
      grep -qx "$pkg" <<<"$packages" ||
        problem "$(basename "$bin") loads $lib from package $pkg, which the Dockerfile's runtime stage does not install"
    done
  done
else
  echo "docker files: not a Debian system: the runtime libraries were not checked"
fi

# ---- 3. Build tree, compose commands, plugin path ---------------------------------------
build_cmd=$(grep -E '^RUN .*cmake --build' <<<"$instructions" || true)
targets=$(grep -oE -- '--target( [A-Za-z0-9_.+-]+)+' <<<"$build_cmd" | sed 's/--target//' | tr ' ' '\n' | grep . || true)
[ -n "$targets" ] || problem "found no 'cmake --build ... --target' in the Dockerfile"
for from in $(grep -oE '/build/[A-Za-z0-9_./-]+' <<<"$build_cmd" | sort -u); do
  [ -e "$build/${from#/build/}" ] || problem "the Dockerfile takes $from from its build tree; this build has no ${from#/build/}"
done
for program in $(grep -oE '^ *command: *\[ *"[^"]+"' "$compose" | sed -E 's/.*"([^"]+)"$/\1/' | sort -u); do
  # The base image's shell (the keys service's loop): run_stack.sh runs that loop itself.
  [ "$program" = sh ] && continue
  grep -qx "$program" <<<"$targets" || problem "docker-compose.yml runs $program, which the Dockerfile does not build"
done
for plugin in $(grep -oE '/[A-Za-z0-9_./-]+\.so' "$yaml" | sort -u); do
  grep -qF "/stage$plugin" <<<"$instructions" || problem "dpool.yaml loads $plugin, which the Dockerfile does not install"
done

[ "$fail" -eq 0 ] || exit 1
echo "docker files: ok"
