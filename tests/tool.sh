#!/usr/bin/env bash
# tool.sh - tests of the spmc tool (tools/spmc.c) against live, dead,
# foreign and hostile segments. Run by `make tool-test` (part of
# `make test`); SPMC names the tool (default $BUILD/lib/spmc, BUILD=build).
#
# Every check prints "ok" or "FAIL" with what it compared; the script exits
# 1 if any failed. Queues are named /spmc-tool-PID-*, and removed at the end
# however the script ends.
set -u
SPMC=${SPMC:-${BUILD:-build}/lib/spmc}
[ -x "$SPMC" ] || { echo "tool.sh: no tool at $SPMC (make lib builds it)" >&2; exit 2; }
P=/spmc-tool-$$
tmp=$(mktemp -d)
pids=()
failed=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -f /dev/shm/"${P#/}"-* 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # check DESCRIPTION COMMAND...: ok if COMMAND succeeds
  local what=$1; shift
  if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; failed+=("$what"); fi
}
has() { grep -q -- "$2" <<<"$1"; }
# exits_with STATUS PATTERN COMMAND...: COMMAND exits STATUS and prints PATTERN
exits_with() {
  local want=$1 pattern=$2 out rc; shift 2
  out=$("$@" 2>&1); rc=$?
  [ "$rc" -eq "$want" ] && grep -q -- "$pattern" <<<"$out"
}
# scribbled SUFFIX OFFSET BYTES: $P-SUFFIX, a copy of the dead queue $P-d
# with BYTES (a printf format) written at OFFSET
scribbled() {
  cp /dev/shm/"${P#/}"-d /dev/shm/"${P#/}-$1"
  printf "$3" | dd of=/dev/shm/"${P#/}-$1" bs=1 seek="$2" conv=notrunc status=none
}
# Wait up to 10 s for COMMAND to succeed (a process to attach, say).
until_ok() {
  local i
  for i in $(seq 200); do "$@" && return 0; sleep 0.05; done
  return 1
}
# The list line of queue NAME.
row() { "$SPMC" list | awk -v n="$1" '$1 == n'; }
# writer_is NAME WORD: list shows NAME as a complete queue whose writer is
# WORD (alive, dead, closed)
writer_is() { test "$(row "$1" | awk '{print $5}')" = "$2"; }
# readers_are NAME ALIVE/TABLE: list shows that many live readers
readers_are() { test "$(row "$1" | awk '{print $6}')" = "$2"; }
# A writer that stays alive: send reading a FIFO that a sleep holds open
# (its pid in $writer; the sleep's is killed at the end too).
live_writer() { # live_writer NAME [send options]
  local name=$1 fifo=$tmp/in-${1##*-}; shift
  mkfifo "$fifo"
  "$SPMC" send "$name" "$@" < "$fifo" &
  writer=$!
  pids+=($writer)
  sleep 600 > "$fifo" 2>/dev/null &
  pids+=($!)
  until_ok writer_is "$name" alive # created, header complete
}
reader() { # reader NAME OUTFILE: spmc recv in the background
  "$SPMC" recv "$1" > "$2" 2>"$2.err" &
  pids+=($!)
}

echo "== list and stat: live queues, both modes"
live_writer "$P-b" --capacity 64 --size 128
reader "$P-b" "$tmp/b1"; reader "$P-b" "$tmp/b2"
live_writer "$P-s" --fanout share --capacity 32 --size 1024 --claim 3
reader "$P-s" "$tmp/s1"
check "two readers seen attached to $P-b" until_ok readers_are "$P-b" 2/16
check "one reader seen attached to $P-s" until_ok readers_are "$P-s" 1/16
r=$(row "$P-b")
check "list: broadcast, 128 bytes, capacity 64, writer alive ($r)" \
  test "$(awk '{print $2, $3, $4, $5}' <<<"$r")" = "broadcast 128 64 alive"
r=$(row "$P-s")
check "list: share, 1024 bytes, capacity 32, writer alive ($r)" \
  test "$(awk '{print $2, $3, $4, $5}' <<<"$r")" = "share 1024 32 alive"
s=$("$SPMC" stat "$P-b"); rc=$?
check "stat of a live queue exits 0" test $rc -eq 0
check "stat: fan-out broadcast" has "$s" "^fan-out   broadcast"
check "stat: records of up to 128 bytes" has "$s" "^records   up to 128 bytes"
check "stat: 64 slots of 64 bytes" has "$s" "^capacity  64 slots of 64 bytes"
check "stat: writer alive with its pid" has "$s" "^writer    alive, pid [0-9]"
check "stat: 2 readers alive" has "$s" "^readers   2 alive, 2 entries held, 16 in the table"
check "stat: two active, alive entries" test "$(grep -c '^  entry .* active   alive .* pid [0-9]' <<<"$s")" -eq 2
s=$("$SPMC" stat "$P-s")
check "stat: share claims up to 3 slots at a time (--claim 3)" has "$s" "^claims    up to 3 slots at a time"
check "stat: share, 1 reader alive" has "$s" "^readers   1 alive"
w=$(timeout 2.5 "$SPMC" stat "$P-b" --watch)
check "stat --watch prints again every second (2 or 3 frames in 2.5 s)" \
  test "$(grep -c '^(every second' <<<"$w")" -ge 2

echo "== rm refuses a live queue"
check "rm of a live queue exits 1, says it is in use" \
  exits_with 1 "is in use: a live process holds it" "$SPMC" rm "$P-b"
check "the live queue is still there" test -e /dev/shm/"${P#/}"-b

echo "== a dead writer"
live_writer "$P-d"
{ kill -9 "$writer"; wait "$writer"; } 2>/dev/null
check "list shows the writer dead" until_ok writer_is "$P-d" dead
s=$("$SPMC" stat "$P-d")
check "stat shows the writer dead" has "$s" "^writer    dead"

if [ "$(id -u)" = 0 ] && unshare --pid --fork --mount-proc true 2>/dev/null; then
  echo "== a writer in another PID namespace"
  mkfifo "$tmp/in-ns"
  unshare --pid --fork --mount-proc "$SPMC" send "$P-ns" < "$tmp/in-ns" &
  ns=$!
  pids+=($ns)
  sleep 600 > "$tmp/in-ns" 2>/dev/null &
  nsleep=$!
  pids+=($nsleep)
  until_ok writer_is "$P-ns" alive
  r=$(row "$P-ns")
  check "list: its writer is alive ($r)" test "$(awk '{print $5}' <<<"$r")" = alive
  s=$("$SPMC" stat "$P-ns")
  check "stat: alive, with the pid it has in its own namespace" has "$s" "^writer    alive, pid [12] in its own PID namespace"
  { kill -9 "$nsleep"; wait "$ns"; } 2>/dev/null # end of its input: it closes
  check "the queue is gone once that writer has closed" until_ok test ! -e /dev/shm/"${P#/}"-ns
else
  echo "== (not root, or no unshare: the PID-namespace case is skipped)"
fi

echo "== foreign and hostile segments"
head -c 4096 /dev/urandom | tr -d 'S' > /dev/shm/"${P#/}"-junk
check "list leaves out a segment that is not ours" test -z "$(row "$P-junk")"
check "stat of a foreign segment: exit 1, says not ours" \
  exits_with 1 "is not a queue of ours" "$SPMC" stat "$P-junk"
check "rm refuses a segment that is not ours" exits_with 1 "not removed" "$SPMC" rm "$P-junk"
check "... and leaves it there" test -e /dev/shm/"${P#/}"-junk
# A FIFO under a queue's name: opening it read-only must not wait for a writer.
mkfifo /dev/shm/"${P#/}"-fifo
check "stat of a FIFO returns at once, exit 1, not ours" \
  exits_with 1 "is not a queue of ours" timeout 10 "$SPMC" stat "$P-fifo"
timeout 10 "$SPMC" list > /dev/null
check "list with a FIFO in /dev/shm returns" test $? -eq 0
# A copy of the dead queue with its capacity scribbled (offset 24).
scribbled hostile 24 '\377\377\377\377\377\377\377\177'
r=$(row "$P-hostile")
check "list: a hostile header is reported, not read ($r)" has "$r" "do not fit together"
check "stat of a hostile header exits 1 with the problem" \
  exits_with 1 "damaged or hostile" "$SPMC" stat "$P-hostile"
# Only the magic number, then nothing: a creator that died at once.
printf 'SPMC' > /dev/shm/"${P#/}"-short
r=$(row "$P-short")
check "list: a segment shorter than a header ($r)" has "$r" "shorter than a header"
# Another wire-format version (offset 4): refused by list, stat and recv.
scribbled v6 4 '\006'
r=$(row "$P-v6")
check "list: another version is named as such ($r)" has "$r" "another wire-format version"
check "recv refuses another version with a clear error" \
  exits_with 1 "not a queue of this version" "$SPMC" recv "$P-v6"
# Random bytes after our magic, the whole size of a real queue.
{ printf 'SPMC'; head -c 70000 /dev/urandom; } > /dev/shm/"${P#/}"-noise
r=$(row "$P-noise")
check "list: random bytes after the magic are reported ($r)" test -n "$r"
# ... and with a largest record (offset 16) that two of cannot fit in the ring.
scribbled hostile-max 16 '\000\000\000\001'
r=$(row "$P-hostile-max")
check "list: a largest record too big for the ring is reported ($r)" has "$r" "do not fit together"
for f in hostile hostile-max short v6 noise; do
  "$SPMC" stat "$P-$f" > /dev/null 2>&1
  check "stat of $f ends with exit 1, not a signal" test $? -eq 1
done
if [ "$(id -u)" = 0 ] && unshare --mount true 2>/dev/null; then
  # A queue whose reader table (200 entries, 12.8 KiB) lies in pages the
  # file does not have, in a /dev/shm with no room left for them: a load
  # from a mapping of those pages would be SIGBUS; list and stat read the
  # segment with pread(), where such a page reads as zeros.
  echo "== a sparse segment in a full /dev/shm (a private 1 MiB tmpfs)"
  live_writer "$P-big" --readers 200
  { kill -9 "$writer"; wait "$writer"; } 2>/dev/null
  until_ok writer_is "$P-big" dead
  head -c 4096 /dev/shm/"${P#/}"-big > "$tmp/big-head"
  out=$(unshare --mount sh -c '
    mount -t tmpfs -o size=1M tmpfs /dev/shm || exit 3
    cp "$2" "/dev/shm/$1" && truncate -s "$3" "/dev/shm/$1" || exit 3
    dd if=/dev/zero of=/dev/shm/fill bs=4096 2>/dev/null # until it is full
    "$4" stat "/$1"; echo "stat exit=$?"
    "$4" list; echo "list exit=$?"' \
    sh "${P#/}-big" "$tmp/big-head" "$(stat -c %s /dev/shm/"${P#/}"-big)" "$SPMC" 2>&1)
  check "stat of it exits 0, no signal ($(grep '^stat exit' <<<"$out"))" has "$out" "^stat exit=0"
  check "... and reads its header: writer dead" has "$out" "^writer    dead"
  check "list of it exits 0 and shows it ($(grep '^list exit' <<<"$out"))" \
    test "$(grep -c -e "^$P-big .* dead " -e "^list exit=0" <<<"$out")" = 2
  "$SPMC" rm "$P-big" > /dev/null
else
  echo "== (not root, or no unshare: the full-/dev/shm case is skipped)"
fi
check "rm removes the dead queue" exits_with 0 "removed $P-d" "$SPMC" rm "$P-d"
check "... and it is gone" test ! -e /dev/shm/"${P#/}"-d

echo "== send | recv, both modes, every line accounted for"
N=200000
seq "$N" > "$tmp/lines"
for mode in broadcast share; do
  rm -f "$tmp/$mode".*
  reader "$P-$mode" "$tmp/$mode.1"; r1=$!
  reader "$P-$mode" "$tmp/$mode.2"; r2=$!
  reader "$P-$mode" "$tmp/$mode.3"; r3=$!
  "$SPMC" send "$P-$mode" --fanout "$mode" --capacity 256 --wait-readers 3 < "$tmp/lines"
  check "send ($mode) exits 0" test $? -eq 0
  for p in $r1 $r2 $r3; do
    wait "$p"; check "recv ($mode) exits 0 at the end of the stream" test $? -eq 0
  done
  if [ "$mode" = broadcast ]; then
    for k in 1 2 3; do
      check "broadcast reader $k: all $N lines, in order" cmp -s "$tmp/lines" "$tmp/$mode.$k"
    done
  else
    total=$(cat "$tmp/$mode".[123] | wc -l)
    check "share: $N lines in all ($total)" test "$total" -eq "$N"
    check "share: each line exactly once" \
      bash -c "sort -n '$tmp/$mode'.[123] | cmp -s - '$tmp/lines'"
  fi
  check "the queue is gone after the end of the stream" test ! -e /dev/shm/"${P#/}-$mode"
done

echo "== share: a recv killed with SIGKILL loses no line"
# Reader A takes lines 1-100 one at a time (--claim 1) and is killed once
# its output has them; reader B then takes 101-200. Each line must be in A's
# output or B's: a line A had released was written out before (at most the
# one A held when it died comes twice, once from each).
mkfifo "$tmp/kin"
"$SPMC" send "$P-kill" --fanout share --claim 1 --size 64 --capacity 64 --wait-readers 1 < "$tmp/kin" &
ks=$!
pids+=($ks)
exec 7>"$tmp/kin"
# (The readers must not inherit fd 7, or send would never see the end.)
"$SPMC" recv "$P-kill" > "$tmp/kill.a" 2>/dev/null 7>&- &
ka=$!
pids+=($ka)
seq 1 100 >&7
until_ok test "$(wc -l < "$tmp/kill.a")" -ge 100
{ kill -9 "$ka"; wait "$ka"; } 2>/dev/null
"$SPMC" recv "$P-kill" > "$tmp/kill.b" 2>"$tmp/kill.b.err" 7>&- &
kb=$!
pids+=($kb)
seq 101 200 >&7
exec 7>&-
wait "$ks"
check "send exits 0 after its last line" test $? -eq 0
wait "$kb"
check "reader B exits 0 at the end of the stream" test $? -eq 0
check "no line lost: each of the 200 is in A's output or B's" \
  bash -c "sort -n -u '$tmp/kill.a' '$tmp/kill.b' | cmp -s - <(seq 200)"
check "at most one line twice (the one A held)" \
  test "$(cat "$tmp/kill.a" "$tmp/kill.b" | wc -l)" -le 201

echo "== recv started before send, on a queue whose writer died"
# The readers find the dead queue first, with nothing in it; they must wait
# for the send that replaces it, not stop.
live_writer "$P-st" --fanout share
{ kill -9 "$writer"; wait "$writer"; } 2>/dev/null
seq 10 > "$tmp/st.in"
"$SPMC" recv "$P-st" --wait 60 > "$tmp/st.1" 2>"$tmp/st.1.err" &
s1=$!
"$SPMC" recv "$P-st" --wait 60 > "$tmp/st.2" 2>"$tmp/st.2.err" &
s2=$!
pids+=($s1 $s2)
sleep 0.5 # (they may have looked at the dead queue by now, or not yet: either must work)
timeout 60 "$SPMC" send "$P-st" --fanout share --wait-readers 2 < "$tmp/st.in"
check "send replaces the dead queue and finds both readers" test $? -eq 0
wait "$s1"; r1=$?
wait "$s2"; r2=$?
check "both readers exit 0 ($r1, $r2)" test "$r1$r2" = 00
check "... with the 10 lines between them, each once" \
  bash -c "sort -n '$tmp/st.1' '$tmp/st.2' | cmp -s - '$tmp/st.in'"

echo "== a segment cut short under its writer and reader (truncate)"
# The next touch of the mapping past the file's new end raises SIGBUS: each
# side must stop with exit 1 and a message, not die of the signal.
mkfifo "$tmp/bin"
"$SPMC" send "$P-bus" --wait-readers 1 < "$tmp/bin" 2>"$tmp/bus.send" &
bs=$!
pids+=($bs)
exec 7>"$tmp/bin"
"$SPMC" recv "$P-bus" > /dev/null 2>"$tmp/bus.recv" 7>&- &
br=$!
pids+=($br)
echo first >&7
until_ok test "$(row "$P-bus" | awk '{print $7}')" = 1 # the line is written
truncate -s 0 /dev/shm/"${P#/}-bus"
echo second >&7 # the writer touches the ring
exec 7>&-
wait "$br"; rr=$?
wait "$bs"; rs=$?
check "recv exits 1 ($rr), not killed by SIGBUS" test "$rr" -eq 1
check "... and says the segment was cut short" grep -q "cut short" "$tmp/bus.recv"
check "send exits 1 ($rs), not killed by SIGBUS" test "$rs" -eq 1
check "... and says the segment was cut short" grep -q "cut short" "$tmp/bus.send"

echo "== send | recv: lines of every length from 0 to --size, across the ring's end"
# 0..300 bytes, twice over, through a ring of 32 slots: records of 1 to 5
# slots, padding at the ring's end many times; every byte compared.
for k in 1 2; do for n in $(seq 0 300); do head -c "$n" /dev/zero | tr '\0' "$(( n % 10 ))"; echo; done; done > "$tmp/var"
reader "$P-var" "$tmp/var.out"; rv=$!
"$SPMC" send "$P-var" --size 300 --capacity 32 --wait-readers 1 < "$tmp/var"
check "send of lines of 0 to 300 bytes exits 0" test $? -eq 0
wait "$rv"
check "recv exits 0 at the end of the stream" test $? -eq 0
check "every line came back, byte for byte" cmp -s "$tmp/var" "$tmp/var.out"

echo "== send: a line too long for a record"
printf 'short\n%0200d\nafter\n' 0 > "$tmp/long"
reader "$P-long" "$tmp/long.out"; rl=$!
check "send stops with exit 1 at the long line" \
  exits_with 1 "line 2 has 200 bytes" "$SPMC" send "$P-long" --size 64 --wait-readers 1 < "$tmp/long"
wait "$rl"
check "the reader got the line before it, and nothing after" \
  test "$(cat "$tmp/long.out")" = "short"

echo "== usage"
"$SPMC" frobnicate > /dev/null 2>&1
check "an unknown command exits 2" test $? -eq 2
"$SPMC" send "$P-x" --capacity 3 < /dev/null > /dev/null 2>&1
check "a capacity that is not a power of two: exit 1, nothing created" \
  bash -c "[ $? -eq 1 ] && [ ! -e /dev/shm/${P#/}-x ]"
for c in 0 65; do
  "$SPMC" send "$P-x" --fanout share --claim $c < /dev/null > /dev/null 2>&1
  check "--claim $c: exit 2, nothing created" \
    bash -c "[ $? -eq 2 ] && [ ! -e /dev/shm/${P#/}-x ]"
done
"$SPMC" stat nameless > /dev/null 2>&1
check "a name without its slash: exit 1" test $? -eq 1
for bad in "" nameless /a/b / /. /..; do
  check "send '$bad': exit 1, said to be no queue name" \
    exits_with 1 "not a queue name" "$SPMC" send "$bad" < /dev/null
  check "recv '$bad': exit 1, said to be no queue name" \
    exits_with 1 "not a queue name" "$SPMC" recv "$bad" --wait 0
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "tool.sh: ${#failed[@]} check(s) FAILED:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "tool.sh: all checks passed"
