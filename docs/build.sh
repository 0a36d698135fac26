#!/usr/bin/env bash
# build.sh OUT - build the documentation site: the course map and the
# README at OUT/, each day's README and public API at OUT/dayN/ (one Doxygen
# run per day, so that the days' same-named functions never mix). Fails if
# Doxygen prints any warning.
#
# The site mirrors the repository (OUT/dayN is dayN/), and it must work
# opened from disk (file://), where a link to a folder shows a directory
# listing and a link to a .c file leads nowhere. So after Doxygen, every
# relative link of every page that does not name a file of the site is
# pointed at the page that stands for its target (see fix_links below), and
# each day's pages get a link back to the course map. docs/check_links.sh
# checks the result (make linkcheck).
set -eu
out=${1:-build/docs}
# Start from nothing: a page left from an earlier build would hide a link
# that no longer has a target (only a folder this script built is removed).
[ -f "$out/warnings.log" ] && rm -rf "$out"
mkdir -p "$out"
warnings="$out/warnings.log"
: >"$warnings"

# Doxygen looks a Markdown link such as ../README.md up from the folder it
# runs in first, so it runs in an empty folder of its own, with absolute
# paths: a README.md in the folder around the clone is never taken for ours.
top=$(pwd)
docs=$top/docs
cwd=$(mktemp -d)
trap 'rm -rf "$cwd"' EXIT
mkdir "$cwd/run"

run() { # run DIR NAME FILTERS EXTRA INPUT... : one Doxygen run into DIR
  local dir=$1 name=$2 filters=$3 extra=$4 f inputs=""; shift 4
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for f in "$@"; do inputs="$inputs $top/$f"; done
  { cat docs/Doxyfile
    echo "$extra"
    echo "PROJECT_NAME = \"$name\""
    echo "OUTPUT_DIRECTORY = $dir"
    echo "INPUT = $inputs"
    echo "USE_MDFILE_AS_MAINPAGE = $top/$1"
    echo "IMAGE_PATH = $top/docs $top/docs/layout"
    echo "STRIP_FROM_PATH = $top"
    echo "FILTER_PATTERNS = $filters"
    echo "WARN_LOGFILE = $dir/doxygen-warnings.log"
  } | (cd "$cwd/run" && doxygen - >/dev/null)
  cat "$dir/doxygen-warnings.log" >>"$warnings"
}

# Source files appear as source-browser pages only (foo_8c_source.html): the
# filter `true` hands Doxygen an empty file to document, so their internals
# add nothing to the API reference and no warnings, while the page shows the
# file itself (FILTER_SOURCE_FILES = NO). The course part carries the shared
# code and the tests, which the READMEs link to. The course part's tag file
# lets a day's README link to the project README (../README.md) as a page.
shared=$(ls common/*.[ch] tests/*.[ch] 2>/dev/null || true)
tag="$(cd "$out" && pwd)/course.tag"
run "$out" "SPMC queue in C: the course" "*.c=true *.h=true" "GENERATE_TAGFILE = $tag" \
  docs/mainpage.md README.md $shared
for d in day[0-9]; do
  [ -f "$d/README.md" ] || continue
  inputs="$d/README.md"
  [ -f "$d/spmc_queue.h" ] && inputs="$inputs $d/spmc_queue.h"
  inputs="$inputs $(ls "$d"/*.c 2>/dev/null || true)"
  run "$out/$d" "SPMC queue in C: $d" "*.c=true" "TAGFILES = $tag=.." $inputs
done
rm -f "$tag"

# The pictures the pages show, where their relative links expect them.
mkdir -p "$out/docs/layout"
cp docs/layout/*.svg "$out/docs/layout/"
for f in docs/throughput.svg docs/records.svg; do if [ -f "$f" ]; then cp "$f" "$out/docs/"; fi; done

if [ -s "$warnings" ]; then
  echo "docs: Doxygen warnings (fix them; the build fails on any):" >&2
  cat "$warnings" >&2
  exit 1
fi

# fix_links: rewrite each href/src of a page that is relative and names no
# file of the site (links written for GitHub, where the README sits next to
# the code). Its target, resolved against the page's folder (= the README's
# folder in the repository), becomes:
#   a folder (day2/, ../, ../day3)   -> that folder's index.html
#   README.md / dayN/README.md       -> md_README.html / dayN/index.html
#   dayN/foo.h, dayN/foo.c           -> dayN/foo_8h.html if documented, else
#                                       dayN/foo_8c_source.html
#   common/foo.h, tests/foo.c, ...   -> foo_8h_source.html at the site root
# A link whose target has no page stays as it is; check_links.sh reports it.
# Pages below a day's folder also get "back to the course map" in the title.
fix_links() { # fix_links LIST PAGE DIR
  awk -v pdir="$3" -f "$docs/resolve.awk" -f <(printf '%s\n' '
    function fix(v,   i, p, frag, r, c, d, b) {
      if (v == "" || v ~ /^#/ || v ~ /^[A-Za-z][A-Za-z0-9+.-]*:/ || v ~ /^\//) return v
      p = v; frag = ""
      if ((i = index(v, "#")) > 0) { p = substr(v, 1, i - 1); frag = substr(v, i) }
      r = resolve(pdir, p)
      if (r == "/") return v
      if (r in have) return v
      c = ""
      if (r == "" || r in dirs) c = (r == "" ? "" : r "/") "index.html"
      else if (r == "README.md") c = "md_README.html"
      else if (r ~ /\/README\.md$/) c = substr(r, 1, length(r) - 9) "index.html"
      else if (r ~ /\.[ch]$/) {
        d = r; sub(/[^\/]*$/, "", d); b = substr(r, length(d) + 1)
        if (!((d "index.html") in have)) d = ""
        gsub(/_/, "__", b); gsub(/\./, "_8", b)
        c = ((d b ".html") in have) ? d b ".html" : d b "_source.html"
      }
      if (c == "" || !(c in have)) return v
      if (pdir != "" && index(c, pdir "/") == 1) return substr(c, length(pdir) + 2) frag
      return up c frag
    }
    FNR == NR {
      have[$0] = 1
      p = $0
      while (sub(/\/[^\/]*$/, "", p)) dirs[p] = 1
      next
    }
    FNR == 1 { up = ""; n = split(pdir, parts, "/"); for (i = 1; i <= n; i++) up = up "../" }
    {
      line = $0; done = ""
      while (match(line, /(href|src)="[^"]*"/)) {
        attr = substr(line, RSTART, RLENGTH)
        q = index(attr, "\"")
        done = done substr(line, 1, RSTART - 1) substr(attr, 1, q) fix(substr(attr, q + 1, length(attr) - q - 1)) "\""
        line = substr(line, RSTART + RLENGTH)
      }
      $0 = done line
      if (pdir != "" && /<div id="projectname">/)
        $0 = $0 " <span id=\"projectnumber\"><a href=\"" up "index.html\">back to the course map</a></span>"
      print
    }') "$1" "$2" >"$2.tmp"
  mv "$2.tmp" "$2"
}
list="$out/.files"
(cd "$out" && find . -type f ! -name .files | sed 's|^\./||' | sort) >"$list"
while IFS= read -r page; do
  dir=${page%/*}; [ "$dir" = "$page" ] && dir=""
  fix_links "$list" "$out/$page" "$dir"
done < <(grep '\.html$' "$list")
rm -f "$list"
echo "docs: built $out/index.html (no warnings)"
