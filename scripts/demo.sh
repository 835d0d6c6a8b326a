#!/usr/bin/env bash
# make demo: install what is needed, build and install patron_group, start a
# throwaway server, load a sample library, attach it and walk the seed's
# scenario.  The server keeps running afterwards so you can look around.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

DEMO=${DEMO_DIR:-/tmp/patron_group-demo}
PORT=${DEMO_PORT:-54330}

ensure_packages
ensure_user
if [ -d "$DEMO/server/data" ]; then
    say "stopping the previous demo server"
    stop_server "$DEMO/server"
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 755 "$DEMO"
build_and_install "$DEMO"
say "starting a throwaway server on port $PORT (socket in $DEMO/server/socket)"
start_server "$DEMO/server" $PORT

psql_demo() {
    as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" \
        psql -X -q -v ON_ERROR_STOP=1 -d library "$@"
}

say "loading the sample library"
as_user env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" createdb library
psql_demo -f "$BUILD_DIR/demo/library.sql"

say "attaching it"
psql_demo -v attach_file="$BUILD_DIR/demo/attach.sql" <<'SQL'
CREATE EXTENSION patron_group;
\o /dev/null
\i :attach_file
\o
\pset footer off
SELECT kind, relid AS attached_table, coalesce(barcode_column, patron_column) AS column_used,
       coalesce(via_relid::text, '') AS via, coalesce(condition, '') AS condition
  FROM patron_group.attachments ORDER BY attached_at;
SQL

psql_demo -f "$BUILD_DIR/demo/scenario.sql"

# as root the server belongs to the unprivileged user: say how to be it
as=""
[ "$(id -u)" = 0 ] && as="runuser -u $RUN_USER -- "
cat <<EOF

== the demo server is still running
  connect:  ${as}psql -h $PGHOST -p $PGPORT -d library
  stop it:  ${as}$PGBIN/pg_ctl -D $PGDATA_DIR stop
EOF
