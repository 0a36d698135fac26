#!/usr/bin/env bash
# deps.sh - make sure a tool the build needs is installed; install it with
# apt-get on Debian/Ubuntu (through sudo when not root), or say exactly what
# to run elsewhere. Usage: common/deps.sh check|valgrind|doxygen|doxygen-only|plot ...
set -u

need=()      # Debian packages to install
for what in "$@"; do
  case "$what" in
    check)
      if ! command -v pkg-config >/dev/null 2>&1; then need+=(pkg-config check libsubunit-dev)
      elif ! pkg-config --exists check 2>/dev/null; then need+=(check libsubunit-dev)
      fi ;;
    valgrind) command -v valgrind >/dev/null 2>&1 || need+=(valgrind) ;;
    doxygen)  command -v doxygen  >/dev/null 2>&1 || need+=(doxygen) ;
              command -v dot      >/dev/null 2>&1 || need+=(graphviz) ;;
    doxygen-only) # man pages: no pictures, no graphviz
              command -v doxygen  >/dev/null 2>&1 || need+=(doxygen) ;;
    plot)     command -v gnuplot  >/dev/null 2>&1 || need+=(gnuplot-nox) ;;
    fuzz)     # clang, and its runtime with libFuzzer (a separate package on Debian)
              if ! command -v clang >/dev/null 2>&1; then need+=(clang)
              fi
              if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
                   clang -x c -fsanitize=fuzzer - -o /dev/null >/dev/null 2>&1; then
                v=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p')
                need+=("libclang-rt-${v:-14}-dev")
              fi ;;
    *) echo "deps.sh: unknown tool '$what'" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${need[*]}. This is not a Debian/Ubuntu system; install them" >&2
  echo "deps: with your package manager, e.g. 'dnf install check-devel valgrind doxygen'" >&2
  echo "deps: or 'brew install check pkg-config doxygen', then run make again." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"
  else
    echo "deps: missing ${need[*]}; run as root: apt-get update && apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
echo "deps: installing ${need[*]} with apt-get (needed by this goal)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || { echo "deps: apt-get update failed" >&2; exit 1; }
if ! $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
  echo "deps: 'apt-get install -y ${need[*]}' failed; run it by hand to see why" >&2
  exit 1
fi
echo "deps: installed ${need[*]}"
