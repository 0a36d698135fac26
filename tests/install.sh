#!/usr/bin/env bash
# install.sh - `make install` into a staging root (DESTDIR), then check what
# an engineer gets: the files, the soname, the exported symbols (the public
# functions of the header, nothing else), the man pages, and the examples
# built out of this tree against the installed copy through pkg-config,
# dynamically and statically, and run. Run by `make install-test` (part of
# `make test`). SPMC_REQUIRE_MAN=1 (CI) fails when `man` is missing
# instead of skipping that check.
set -u
cd "$(dirname "$0")/.." || exit 2
make=${MAKE:-make}
prefix=/usr/local
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
failed=()
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; failed+=("$what"); fi
}

echo "== make install DESTDIR=$stage PREFIX=$prefix"
$make --no-print-directory install DESTDIR="$stage" PREFIX="$prefix" BUILD="${BUILD:-build}" ||
  { echo "install.sh: make install failed"; exit 1; }
root=$stage$prefix
major=$(sed -n 's/^#define SPMC_VERSION \([0-9]*\)u$/\1/p' "$root/include/spmc_queue.h")
for f in lib/libspmc.a "lib/libspmc.so.$major.0" "lib/libspmc.so.$major" lib/libspmc.so \
         lib/pkgconfig/spmc.pc include/spmc_queue.h bin/spmc share/man/man1/spmc.1 \
         share/man/man3/spmc_queue.h.3 share/man/man3/spmc_queue_attach.3; do
  check "installed $f" test -e "$root/$f"
done
check "libspmc.so.$major is a link to libspmc.so.$major.0" \
  test "$(readlink "$root/lib/libspmc.so.$major")" = "libspmc.so.$major.0"
soname=$(LC_ALL=C readelf -d "$root/lib/libspmc.so.$major.0" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
check "soname libspmc.so.$major ($soname)" test "$soname" = "libspmc.so.$major"

echo "== exported symbols: the header's functions, nothing else"
nm -D --defined-only "$root/lib/libspmc.so.$major.0" | awk '{print $3}' | sort > "$stage/exported"
# Every function the header declares, whatever it returns (int, long).
sed -n 's/^\(SPMC_MUST_CHECK \)\{0,1\}\(int\|long\) \(spmc_[a-z_]*\)(.*/\3/p' "$root/include/spmc_queue.h" |
  sort > "$stage/declared"
check "nm -D lists $(wc -l < "$stage/declared") functions, those of spmc_queue.h" \
  cmp -s "$stage/exported" "$stage/declared"
if ! cmp -s "$stage/exported" "$stage/declared"; then diff "$stage/declared" "$stage/exported"; fi
check "the static library defines no other global symbol" \
  test -z "$(nm --defined-only "$root/lib/libspmc.a" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^spmc_queue_/')"

echo "== pkg-config"
export PKG_CONFIG_PATH=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
check "pkg-config --modversion spmc is $major.0" test "$(pkg-config --modversion spmc)" = "$major.0"
check "pkg-config --cflags points into the staged include" \
  test "$(echo $(pkg-config --cflags spmc))" = "-I$root/include"

echo "== the examples, out of this tree, against the installed library"
cp -r examples "$stage/examples"
rm -rf "$stage/examples/build"
( cd "$stage/examples" && $make --no-print-directory ) > "$stage/build.log" 2>&1
check "examples build with pkg-config alone" test -x "$stage/examples/build/feed" -a -x "$stage/examples/build/jobs"
[ -x "$stage/examples/build/feed" ] || cat "$stage/build.log"
check "feed links libspmc.so.$major dynamically" \
  bash -c "LD_LIBRARY_PATH='$root/lib' ldd '$stage/examples/build/feed' | grep -q 'libspmc.so.$major => $root/lib/'"
for ex in feed jobs; do
  out=$(LD_LIBRARY_PATH=$root/lib "$stage/examples/build/$ex" 2>&1); rc=$?
  echo "$out" | sed 's/^/        /'
  check "$ex runs and checks itself (exit $rc)" test $rc -eq 0
done
check "jobs: every job done exactly once" grep -q "every job exactly once" <<<"$out"
# Static: the archive, and the private libraries pkg-config names for it.
cc -std=c11 "$stage/examples/feed.c" $(pkg-config --cflags spmc) -o "$stage/feed-static" \
  -L"$root/lib" -Wl,-Bstatic -lspmc -Wl,-Bdynamic $(pkg-config --libs-only-other --static spmc) -lrt
check "feed links statically (no libspmc.so needed)" \
  bash -c "! ldd '$stage/feed-static' | grep -q libspmc && '$stage/feed-static' > /dev/null"

echo "== man pages"
if command -v man > /dev/null; then
  page=$(MANPATH=$root/share/man MANWIDTH=80 man -P cat spmc_queue_attach 2> /dev/null)
  check "man spmc_queue_attach shows its page" grep -q "Attach to the queue" <<<"$page"
  page=$(MANPATH=$root/share/man MANWIDTH=80 man -P cat 1 spmc 2> /dev/null)
  check "man 1 spmc shows the tool's page" grep -q "list, inspect, remove and use" <<<"$page"
elif [ "${SPMC_REQUIRE_MAN:-0}" = 1 ]; then
  check "man is installed (SPMC_REQUIRE_MAN=1)" false
else
  echo "  skip  man is not installed here (apt-get install man-db); pages checked by file only"
fi

echo "== make uninstall"
$make --no-print-directory uninstall DESTDIR="$stage" PREFIX="$prefix" > /dev/null
left=$(find "$stage$prefix" -type f -o -type l | grep -v "^$stage/examples" || true)
check "uninstall leaves no file behind ($(echo $left))" test -z "$left"

if [ ${#failed[@]} -ne 0 ]; then
  echo "install.sh: ${#failed[@]} check(s) FAILED:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "install.sh: all checks passed"
