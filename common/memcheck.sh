#!/usr/bin/env bash
# memcheck.sh DAY... - the named days' test binaries (TESTS, from make) and
# then each day's producer/consumer demo, under Valgrind memcheck: any
# invalid access, uninitialised read or leak fails. Every binary runs even
# when one before it failed; the exit status is non-zero if any did.
# Run by `make memcheck` and `make dayN memcheck`.
# Environment: TESTS (test binaries), BUILD (build directory).
set -u
export VALGRIND="timeout 900 valgrind -q --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite,indirect,possible \
--show-leak-kinds=definite,indirect,possible --trace-children=no"
status=0
failed=""
# In one process (CK_FORK=no) so that Valgrind sees every test; fewer
# stress messages, as Valgrind runs code some 20-50 times slower. The
# suites run TEST_JOBS at a time (run_tests.sh; Valgrind runs a program's
# threads one at a time, so two suites keep two CPUs busy).
if [ -n "${TESTS:-}" ]; then
  # shellcheck disable=SC2086 # TESTS is a list of paths
  SPMC_STRESS_MESSAGES=20000 CK_FORK=no CK_VERBOSITY=normal TEST_WRAP="$VALGRIND" LABEL=memcheck \
    ./common/run_tests.sh $TESTS || { failed="$failed suites"; status=1; }
fi
for d in "$@"; do
  echo "== memcheck $d demo"
  BUILD=${BUILD:-build} ./common/demo.sh "$d" >/dev/null || { echo "memcheck: $d demo failed"; failed="$failed $d-demo"; status=1; }
done
# Said again at the end, where a log cut to its tail still shows it.
[ -z "$failed" ] || echo "memcheck: FAILED:$failed"
exit $status
