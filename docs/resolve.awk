# resolve.awk - resolve(DIR, REL): the site path that the relative link REL
# names from a page in the site folder DIR ("" is the site root), or "/" if
# it climbs out of the site. For docs/build.sh (fixing the links of the
# pages) and docs/check_links.sh (checking them). POSIX awk (mawk).
function resolve(base, rel,   n, i, k, parts, keep, r) {
  n = split(base == "" ? rel : base "/" rel, parts, "/")
  k = 0
  for (i = 1; i <= n; i++) {
    if (parts[i] == "" || parts[i] == ".") continue
    if (parts[i] == "..") { if (k == 0) return "/"; k--; continue }
    keep[++k] = parts[i]
  }
  r = ""
  for (i = 1; i <= k; i++) r = r (i > 1 ? "/" : "") keep[i]
  return r
}
