#!/usr/bin/env bash
# check_links.sh [SITE] - check every link of the documentation site
# (default build/docs) as a reader who opened it from disk would follow it:
# each href="..." and src="..." of each page must name a file of the site
# (not a folder: file:// shows a folder as a bare listing, not a page; not a
# path outside the site; not an absolute path), and a #fragment must be an
# id= or name= of the page it points into. Links with a scheme (https:,
# mailto:, ...) are listed, not followed: the check needs no network.
# Prints each broken link with its page and line; exits 1 if there is any.
#
# Independent of docs/build.sh's link rewriting on purpose, so that a mistake
# there cannot hide itself. Plain bash and POSIX awk (mawk), nothing else.
set -eu
site=${1:-build/docs}
site=${site%/}
[ -f "$site/index.html" ] || { echo "check_links: no $site/index.html (run make docs)" >&2; exit 2; }

listing=$(mktemp)
trap 'rm -f "$listing"' EXIT
(cd "$site" && find . -mindepth 1 \( -type d -printf 'd %P\n' \) -o \( -type f -printf 'f %P\n' \) | LC_ALL=C sort) >"$listing"

# resolve() comes from resolve.awk, which build.sh's link fixing uses too.
awk -v site="$site" -v listing="$listing" -f "$(dirname "$0")/resolve.awk" -f <(printf '%s\n' '
  # read_page(F): record the anchors of page F and the links on it.
  function read_page(f,   l, lineno, line, a, pdir) {
    pdir = f; if (!sub(/\/[^\/]*$/, "", pdir)) pdir = ""
    while ((getline l < (site "/" f)) > 0) {
      lineno++
      line = l
      while (match(line, anchor)) {
        a = substr(line, RSTART, RLENGTH); sub(/^[ \t](id|name)="/, "", a); sub(/"$/, "", a)
        has[f, a] = 1
        line = substr(line, RSTART + RLENGTH)
      }
      line = l
      while (match(line, attr)) {
        a = substr(line, RSTART, RLENGTH); sub(/^[ \t](href|src)=./, "", a)
        n++; L[n] = substr(a, 1, length(a) - 1); P[n] = f; D[n] = pdir; N[n] = lineno
        line = substr(line, RSTART + RLENGTH)
      }
    }
    close(site "/" f)
  }
  BEGIN {
    q = "\047"
    attr = "[ \t](href|src)=(\"[^\"]*\"|" q "[^" q "]*" q ")"
    anchor = "[ \t](id|name)=\"[^\"]*\""
    isdir[""] = 1
    while ((getline l < listing) > 0) {
      if (substr(l, 1, 2) == "d ") isdir[substr(l, 3)] = 1
      else { isfile[substr(l, 3)] = 1; if (l ~ /\.html$/) page[++npages] = substr(l, 3) }
    }
    for (i = 1; i <= npages; i++) read_page(page[i])

    for (i = 1; i <= n; i++) {
      v = L[i]; gsub(/&amp;/, "\\&", v)
      if (v ~ /^javascript:/) { js++; continue }
      if (v ~ /^[A-Za-z][A-Za-z0-9+.-]*:/) { ext[v]++; next_ext++; continue }
      checked++
      path = v; frag = ""
      if ((k = index(path, "#")) > 0) { frag = substr(path, k + 1); path = substr(path, 1, k - 1) }
      if ((k = index(path, "?")) > 0) path = substr(path, 1, k - 1)
      why = ""
      if (path ~ /^\//) why = "an absolute path, which breaks when the site is opened from disk"
      else {
        t = (path == "") ? P[i] : resolve(D[i], path)
        if (t == "/") why = "points outside the site"
        else if (t in isdir) why = "a folder, not a page (from disk it opens a directory listing)"
        else if (!(t in isfile)) why = "no such file in the site: " t
        else if (frag != "" && t ~ /\.html$/ && !((t, frag) in has)) why = "no id or name \"" frag "\" in " t
        else if (!(t in target)) { target[t] = 1; ntargets++ }
      }
      if (why != "") { bad++; printf "%s/%s:%d: broken link \"%s\": %s\n", site, P[i], N[i], L[i], why }
    }
    if (next_ext) {
      print "check_links: links out of the site, listed, not followed:"
      for (e in ext) printf "  %s (%d)\n", e, ext[e]
    }
    printf "check_links: %d pages, %d links to %d files of the site checked, %d broken", npages, checked, ntargets, bad
    printf "; %d links out of the site, %d javascript: links not checked\n", next_ext, js
    exit bad ? 1 : 0
  }')
