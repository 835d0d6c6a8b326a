#!/usr/bin/env bash
# lintian.sh CHANGES: lintian over the source and binary packages a .changes
# file lists, failing on any error or warning.  Lintian advises against
# running as root: as root, the files are copied to a scratch folder and
# lintian runs as the unprivileged test user (pgtester).  Tags that are
# explained and accepted are in debian/*lintian-overrides.

set -euo pipefail
changes=$1
[ -f "$changes" ] || { echo "lintian.sh: $changes not found" >&2; exit 1; }
command -v lintian >/dev/null || { echo "lintian.sh: lintian is not installed" >&2; exit 1; }
LINT=(lintian --info --display-info --fail-on error,warning)
if [ "$(id -u)" = 0 ] && id pgtester >/dev/null 2>&1; then
    tmp=$(mktemp -d /tmp/patron_group-lintian.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    dir=$(dirname "$changes")
    # the .changes file and every file it lists
    cp "$changes" "$tmp/"
    sed -n '/^Files:/,/^[^ ]/s/^ [0-9a-f]\{32\} [0-9]\+ [^ ]\+ [^ ]\+ \(.*\)$/\1/p' "$changes" \
        | while read -r f; do cp "$dir/$f" "$tmp/"; done
    chmod -R a+rX "$tmp"
    chmod 755 "$tmp"
    # from the scratch folder: lintian needs a working directory the test
    # user may enter (a checkout under /root is not one)
    (cd "$tmp" && runuser -u pgtester -- "${LINT[@]}" "$tmp/$(basename "$changes")")
else
    "${LINT[@]}" "$changes"
fi
