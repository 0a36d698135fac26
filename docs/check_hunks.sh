#!/usr/bin/env bash
# check_hunks.sh - every ```diff block quoted in a day's README must still
# appear, line for line and in one piece, in `make diff` from the previous
# day to that day. Prose cannot drift from the code it quotes.
set -u
cd "$(dirname "$0")/.."
status=0
for readme in day[0-9]/README.md; do
  day=${readme%%/*}
  n=${day#day}
  grep -q '^```diff' "$readme" || continue
  prev=day$((n - 1))
  diff_out=$(mktemp)
  make --no-print-directory diff FROM="$prev" TO="$day" >"$diff_out" || { status=1; continue; }
  # awk: read the diff, then each ```diff block of the README; a block must
  # match consecutive diff lines exactly.
  awk -v readme="$readme" -v from="$prev" '
    FNR == NR { d[++nd] = $0; next }
    /^```diff/ { inblock = 1; nb = 0; start = FNR; next }
    inblock && /^```/ {
      inblock = 0; found = 0
      for (i = 1; i + nb - 1 <= nd && !found; i++) {
        ok = 1
        for (j = 1; j <= nb && ok; j++) if (d[i + j - 1] != b[j]) ok = 0
        if (ok) found = 1
      }
      if (!found) {
        printf "%s:%d: quoted hunk is not in `make diff FROM=%s TO=%s` any more\n", readme, start, from, substr(readme, 1, 4)
        bad = 1
      } else checked++
      next
    }
    inblock { b[++nb] = $0 }
    END { if (!bad) printf "%s: %d quoted hunk(s) match the code\n", readme, checked; exit bad }
  ' "$diff_out" "$readme" || status=1
  rm -f "$diff_out"
done
exit $status
