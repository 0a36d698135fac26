#!/usr/bin/env bash
# demo.sh DAY - run a day's producer and consumer(s) as real processes and
# show each one's transcript, as `make dayN run` does. Exits non-zero if any
# of them fails or a segment is left behind. VALGRIND, if set, prefixes each
# program (make memcheck uses it).
set -u
day=${1:?usage: demo.sh dayN}
bin=${BUILD:-build}/$day
vg=${VALGRIND:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# start NAME CMD...: run CMD in the background, transcript in $tmp/NAME.
start() { local n=$1; shift; $vg "$@" >"$tmp/$n" 2>&1 & echo $! >"$tmp/$n.pid"; }
start_sh() { sh -c "$2" >"$tmp/$1" 2>&1 & echo $! >"$tmp/$1.pid"; } # NAME "COMMAND LINE"
# finish NAME: wait for it; remember a failure.
finish() { wait "$(cat "$tmp/$1.pid")" || { echo "!! $1 exited with status $?"; status=1; }; }
# until_line NAME TEXT: wait (at most 20 s, and no longer than NAME runs)
# until NAME's transcript shows TEXT.
until_line() {
  for _ in $(seq 200); do
    grep -q "$2" "$tmp/$1" 2>/dev/null && return 0
    kill -0 "$(cat "$tmp/$1.pid")" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "$2" "$tmp/$1" 2>/dev/null && return 0
  echo "!! $1 never printed '$2':"; sed 's/^/   /' "$tmp/$1"; status=1
}
show() { printf '\n$ %s\n' "$2"; cat "$tmp/$1"; }
no_segment() { [ ! -e "/dev/shm${1}" ] || { echo "!! segment $1 left in /dev/shm"; status=1; }; }
# The demo uses each day's default name, one for the whole machine: if it
# is taken, say so and stop, rather than mix with another run's queue.
name_free() {
  [ -e "/dev/shm${1}" ] || return 0
  echo "demo.sh: $1 is in use (/dev/shm${1} exists): another run of the $day programs," \
       "or one that crashed (then rm /dev/shm${1}); run the demo when it is free" >&2
  exit 1
}

case "$day" in
day1) name_free /queue ;;
day2|day3|day4|day5) name_free /spmc_test_queue ;; # day 6 reclaims a dead run's itself
esac

case "$day" in
day1)
  echo "== day 1: raw POSIX shared memory (the producer keeps the segment for 5 s)"
  start producer "$bin/producer"
  until_line producer "sent a msg"
  start consumer "$bin/consumer"
  finish consumer; finish producer
  show producer ./producer; show consumer ./consumer
  no_segment /queue ;;
day2)
  echo "== day 2: an API and a shared header"
  start producer "$bin/producer"
  until_line producer "spmc_queue created"
  start consumer "$bin/consumer"
  finish consumer; finish producer
  show producer ./producer; show consumer ./consumer
  no_segment /spmc_test_queue ;;
day3|day4)
  echo "== day ${day#day}: one million 64-byte messages through the ring, each checked"
  start producer "$bin/producer" --messages 1000000
  until_line producer "spmc_queue created"
  start consumer "$bin/consumer"
  finish consumer; finish producer
  show producer "./producer --messages 1000000"; show consumer ./consumer
  no_segment /spmc_test_queue ;;
day5)
  for mode in broadcast share; do
    echo "== day 5, $mode: one producer, three consumer processes"
    start producer "$bin/producer" --fanout $mode --consumers 3 --messages 1000000
    until_line producer "spmc_queue created"
    for k in 1 2 3; do start consumer$k "$bin/consumer"; done
    for k in 1 2 3; do finish consumer$k; done; finish producer
    show producer "./producer --fanout $mode --consumers 3 --messages 1000000"
    for k in 1 2 3; do show consumer$k "./consumer   # consumer $k"; done
    no_segment /spmc_test_queue
    echo
  done ;;
day6|day7|day8) # day 7 behaves as day 6 here; its consumers sleep while they wait
  if [ -n "$vg" ]; then # under Valgrind: the plain path (the tests kill peers)
    start producer "$bin/producer" --consumers 2 --messages 200000
    until_line producer "spmc_queue created"
    start consumer1 "$bin/consumer"; start consumer2 "$bin/consumer"
    finish consumer1; finish consumer2; finish producer
    no_segment /spmc_test_queue
  else
  many=50000000
  echo "== day ${day#day}: one consumer killed with SIGKILL mid-stream; the producer goes on"
  start producer "$bin/producer" --consumers 2 --messages $many
  until_line producer "spmc_queue created"
  start consumer1 "$bin/consumer"; start consumer2 "$bin/consumer"
  until_line producer "reader(s)"
  sleep 0.3; kill -KILL "$(cat "$tmp/consumer2.pid")" 2>/dev/null
  wait "$(cat "$tmp/consumer2.pid")" 2>/dev/null
  echo "(killed consumer 2 with SIGKILL)" >>"$tmp/consumer2"
  finish consumer1; finish producer
  show producer "./producer --consumers 2 --messages $many"
  show consumer1 "./consumer   # consumer 1"; show consumer2 "./consumer   # consumer 2, killed"
  no_segment /spmc_test_queue
  echo
  echo "== day ${day#day}: the producer killed with SIGKILL; its consumer drains, then is told; a restart reclaims the name"
  start producer "$bin/producer" --messages 1000000000
  until_line producer "reader(s)"
  start consumer "$bin/consumer"
  sleep 0.3; kill -KILL "$(cat "$tmp/producer.pid")" 2>/dev/null
  wait "$(cat "$tmp/producer.pid")" 2>/dev/null
  echo "(killed the producer with SIGKILL)" >>"$tmp/producer"
  wait "$(cat "$tmp/consumer.pid")"; rc=$?
  [ "$rc" -eq 2 ] || { echo "!! consumer exited with $rc, expected 2 (producer gone)"; status=1; }
  show producer "./producer --messages 1000000000"; show consumer "./consumer"
  start producer "$bin/producer" --messages 1000
  until_line producer "spmc_queue created"
  start consumer "$bin/consumer"
  finish consumer; finish producer
  show producer "./producer --messages 1000   # over the dead producer's segment"
  show consumer "./consumer"
  no_segment /spmc_test_queue
  fi ;;
*) echo "demo.sh: no demo for $day"; exit 2 ;;
esac

if [ "$day" = day8 ]; then # records of any length: lines through the queue
  for mode in broadcast share; do
    echo
    echo "== day 8, $mode: each line of 'seq 100000' as one record, two consumers printing them"
    q=/spmc_test_lines
    for k in 1 2; do # (the shell itself never under Valgrind: only our programs)
      start_sh consumer$k "$vg $bin/consumer --name $q --lines > $tmp/lines$k"
    done
    start_sh producer "seq 100000 | $vg $bin/producer --name $q --lines --fanout $mode --consumers 2"
    finish producer; finish consumer1; finish consumer2
    show producer "seq 100000 | ./producer --name $q --lines --fanout $mode --consumers 2"
    for k in 1 2; do
      show consumer$k "./consumer --name $q --lines > lines$k   # consumer $k: $(wc -l < "$tmp/lines$k") lines"
    done
    if [ $mode = broadcast ]; then
      for k in 1 2; do
        seq 100000 | cmp -s - "$tmp/lines$k" || { echo "!! consumer $k did not print 1..100000"; status=1; }
      done
      echo "(each consumer printed the 100000 lines, in order)"
    else
      sort -n "$tmp/lines1" "$tmp/lines2" | cmp -s - <(seq 100000) ||
        { echo "!! the two consumers did not print 1..100000 once each"; status=1; }
      echo "(together they printed each of the 100000 lines once)"
    fi
    no_segment $q
  done
fi
exit $status
