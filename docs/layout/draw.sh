#!/usr/bin/env bash
# draw.sh DAY... - redraw docs/layout/DAY.dot and DAY.svg from DAY's code.
#
# For each day: list the members of struct spmc_shm_header (and of struct
# spmc_shm_reader, where there is one) as DAY/spmc_queue.h declares them,
# build docs/layout/offsets.c against that header and DAY/spmc_queue.c, let
# it fill docs/layout/DAY.dot.in with offsetof()/sizeof() values and with the
# regions of a real example queue, then draw the .dot with Graphviz `dot`.
# Run by `make layout` (and `make plot`); BUILD and CC as in the Makefile.
set -eu
cd "$(dirname "$0")/../.."
build=${BUILD:-build}/layout
cc=${CC:-cc}
[ $# -gt 0 ] || { echo "usage: $0 day2 [day3 ...]" >&2; exit 2; }
command -v dot >/dev/null || { echo "draw.sh: Graphviz 'dot' is missing (make deps-docs installs it)" >&2; exit 1; }

for day in "$@"; do
  tpl=docs/layout/$day.dot.in
  [ -f "$tpl" ] || { echo "draw.sh: no $tpl" >&2; exit 1; }
  out=$build/$day
  mkdir -p "$out"
  # One FIELD line per member: the last word before ';' is the name, the
  # words before it (alignas(...) dropped) the type.
  awk '
    /^struct spmc_shm_(header|reader) \{/ { kind = ($2 == "spmc_shm_header") ? "HEADER" : "READER"; next }
    kind && /^\};/ { kind = ""; next }
    kind && /;/ {
      line = $0
      sub(/\/\*.*$/, "", line); sub(/\/\/.*$/, "", line); sub(/;.*$/, "", line)
      gsub(/alignas\([^)]*\)/, "", line)
      n = split(line, w, " ")
      name = w[n]; sub(/\[.*$/, "", name)
      type = w[1]; for (i = 2; i < n; i++) type = type " " w[i]
      printf "%s_FIELD(%s, \"%s\")\n", kind, name, type
    }
  ' "$day/spmc_queue.h" >"$out/fields.h"
  grep -q HEADER_FIELD "$out/fields.h" || { echo "draw.sh: no struct spmc_shm_header in $day/spmc_queue.h" >&2; exit 1; }
  "$cc" -std=c11 -Wall -Wextra -O0 -I"$day" -I"$out" docs/layout/offsets.c "$day/spmc_queue.c" \
    -o "$out/offsets" -pthread -lrt
  "$out/offsets" "$tpl" >"$out/$day.dot"
  mv "$out/$day.dot" "docs/layout/$day.dot"
  dot -Tsvg "docs/layout/$day.dot" -o "docs/layout/$day.svg"
  echo "layout: docs/layout/$day.dot and $day.svg from the offsets of $day/spmc_queue.h"
done
