#!/usr/bin/env bash
# build.sh OUT - build the documentation site: the course map and the
# README at OUT/, each day's README and public API at OUT/dayN/ (one Doxygen
# run per day, so that the days' same-named functions never mix). Fails if
# Doxygen prints any warning.
set -eu
out=${1:-build/docs}
mkdir -p "$out"
warnings="$out/warnings.log"
: >"$warnings"

run() { # run DIR NAME INPUT... : one Doxygen run into DIR
  local dir=$1 name=$2; shift 2
  mkdir -p "$dir"
  { cat docs/Doxyfile
    echo "PROJECT_NAME = \"$name\""
    echo "OUTPUT_DIRECTORY = $dir"
    echo "INPUT = $*"
    echo "USE_MDFILE_AS_MAINPAGE = $1"
    echo "WARN_LOGFILE = $dir/doxygen-warnings.log"
  } | doxygen - >/dev/null
  cat "$dir/doxygen-warnings.log" >>"$warnings"
}

run "$out" "SPMC queue in C: the course" docs/mainpage.md README.md
for d in day[0-9]; do
  [ -f "$d/README.md" ] || continue
  inputs="$d/README.md"
  [ -f "$d/spmc_queue.h" ] && inputs="$inputs $d/spmc_queue.h"
  run "$out/$d" "SPMC queue in C: $d" $inputs
done

# The pictures the pages show, where their relative links expect them.
mkdir -p "$out/docs/layout"
cp docs/layout/*.svg "$out/docs/layout/"
[ -f docs/throughput.svg ] && cp docs/throughput.svg "$out/docs/"

if [ -s "$warnings" ]; then
  echo "docs: Doxygen warnings (fix them; the build fails on any):" >&2
  cat "$warnings" >&2
  exit 1
fi
echo "docs: built $out/index.html (no warnings)"
