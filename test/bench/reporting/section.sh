# Section 7 of make bench, sourced by test/bench/run.sh (alone with
# BENCH_ONLY=reporting): the reporting views against hand-written joins.
#
# Each query is run through the extension's view (<name>_view.sql) and
# through a hand-written set-based query over the bench library's own tables
# (<name>_join.sql) that gives the same figures.  Before anything is timed,
# both are run once in one REPEATABLE READ transaction (one snapshot, one
# now()) and their output compared; every member_summary and group_summary
# row is also compared with a hand-written join of the whole view
# (member_rows_join.sql, group_rows_join.sql).  Any difference stops the run.
#
# Uses from run.sh: P, PB, log, say, median, B, WORK, SCALE, ROUNDS, OUT,
# RUN_USER.
# REPORT_ROUNDS (default ROUNDS) rounds of the whole-view queries, view and
# join alternated; LOOKUP_T (default 10) seconds per pgbench run of a lookup,
# LOOKUP_CLIENTS (default 1) clients.

RR=${REPORT_ROUNDS:-$ROUNDS}
LT=${LOOKUP_T:-10}
LC=${LOOKUP_CLIENTS:-1}
Q=$B/reporting
R=$WORK/reporting
DB=bench_report
mkdir -p "$R"
[ "$(id -u)" = 0 ] && chown "$RUN_USER" "$R"
fail() { echo "FAIL (reporting): $*" >&2; exit 1; }
ms() { awk '/^Time:/ {v=$2} END {print v}'; }
mid() { tr ' ' '\n' | grep . | median; }

say "reporting views: attaching the extension, the cards and the lost loans to $DB"
t0=$(date +%s.%N)
# as in bench_ext; roles belong to the cluster, so in a full run bench_ext's
# attaching has already created bench_opac
if [ "$(P -d $DB -Atc "SELECT count(*) FROM pg_roles WHERE rolname = 'bench_opac'")" = 1 ]; then
    grep -v '^CREATE ROLE bench_opac LOGIN;$' "$B/extension.sql" | P -d $DB >/dev/null
else
    P -d $DB -f "$B/extension.sql" >/dev/null
fi
P -d $DB -v scale=$SCALE -f "$Q/library.sql" >/dev/null
P -d $DB -c "VACUUM ANALYZE"
attach_time=$(awk -v a=$t0 -v b=$(date +%s.%N) 'BEGIN{printf "%.2f s", b-a}')
N=$((100000 * SCALE))
LOST=$(P -d $DB -Atc "SELECT count(*) FROM circulation WHERE checkin_at IS NULL AND stop_fines = 'LOST'")
# the group of patron 15 (a family of 6), and a patron and a group with a
# lost loan out and past due (which overdue must not count)
read -r GMIN GMAX G15 PLOST GLOST <<<"$(P -d $DB -At -F ' ' -c "
    WITH lost AS (SELECT l.patron, a.group_id FROM circulation l
                    JOIN patron_group.accounts a ON a.patron_id = l.patron
                   WHERE l.checkin_at IS NULL AND l.stop_fines = 'LOST' AND l.due_at < now())
    SELECT min(group_id), max(group_id),
           (SELECT group_id FROM patron_group.accounts WHERE patron_id = 15),
           (SELECT min(patron) FROM lost), (SELECT min(group_id) FROM lost)
      FROM patron_group.groups")"
[ -n "$GLOST" ] || fail "no group has a lost loan out past due: library.sql did not do its work"

# --- the figures must agree -------------------------------------------------
say "reporting views: comparing the views' figures with the hand-written joins"
# lookup samples: edge cases, then ids spread over the range (deterministic)
PIDS="1 15 16 20 50 999 1000 $PLOST $N 0 $((N + 1))"
GIDS="$G15 $GLOST $GMIN $GMAX 0 $((GMAX + 1))"
for i in $(seq 1 10); do
    PIDS+=" $(( (i * 7919) % N + 1 ))"
    GIDS+=" $(( GMIN + (i * 104729) % (GMAX - GMIN + 1) ))"
done
# the barcode lookup through today's view reads every patron: few samples.
# 2900..: the patron's max active card; 2890..50: an active card that is not
# the max; 2800..10: an inactive card; 2900..999: inactive (no active card)
BIDS="29000000000015 29000000000050 28900000000050 28000000000010 29000000000999 $((29000000000000 + (7919 * 7) % N + 1))"
{
    echo 'BEGIN ISOLATION LEVEL REPEATABLE READ;'
    for v in view join; do
        for q in member_scan member_owing group_scan; do
            echo "\\o $R/check.$q.$v"; echo "\\i $Q/${q}_$v.sql"
        done
        for k in patron group barcode; do
            echo "\\o $R/check.lookup_$k.$v"
            case $k in patron) ids=$PIDS ;; group) ids=$GIDS ;; barcode) ids=$BIDS ;; esac
            for id in $ids; do echo "\\set id $id"; echo "\\i $Q/lookup_${k}_$v.sql"; done
        done
    done
    echo '\o'
    echo 'COMMIT;'
} >"$R/check.sql"
P -d $DB -A -f "$R/check.sql"
for q in member_scan member_owing group_scan lookup_patron lookup_group lookup_barcode; do
    if ! cmp -s "$R/check.$q.view" "$R/check.$q.join"; then
        diff "$R/check.$q.view" "$R/check.$q.join" | head -40 >&2 || true
        fail "$q: the view and the hand-written join give different figures (above: < view, > join)"
    fi
done
lookup_rows() { grep -c '^[0-9]' "$R/check.lookup_$1.view" || true; }
for k in patron group barcode; do
    [ "$(lookup_rows $k)" -gt 0 ] || fail "lookup_$k: no sample found a row, the comparison proves nothing"
done
# every row of the two views, column for column
rows_check() {  # view, hand-written query file
    { echo "BEGIN ISOLATION LEVEL REPEATABLE READ;"
      echo "CREATE TEMP TABLE v AS SELECT * FROM patron_group.$1;"
      echo "CREATE TEMP TABLE j AS"; cat "$2"
      echo "SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM j),"
      echo "       (SELECT count(*) FROM (TABLE v EXCEPT ALL TABLE j) d),"
      echo "       (SELECT count(*) FROM (TABLE j EXCEPT ALL TABLE v) d);"
      echo "COMMIT;"
    } | P -d $DB -At -F ' '
}
for view in member_summary group_summary; do
    qf=$Q/member_rows_join.sql; [ $view = group_summary ] && qf=$Q/group_rows_join.sql
    read -r nv nj dv dj <<<"$(rows_check $view "$qf")"
    echo "  $view: $nv rows; hand-written: $nj rows; only in the view: $dv; only in the join: $dj"
    [ "$nv" = "$nj" ] && [ "$dv" = 0 ] && [ "$dj" = 0 ] && [ "$nv" -gt 0 ] \
        || fail "$view: the hand-written join of every row differs from the view"
    eval "ROWS_$view=$nv"
done
qtext() { grep -v '^--' "$1" | tr -s ' \n' ' ' | sed 's/[ ;]*$//'; }
figures() { tail -n +2 "$R/check.$1.view" | head -1 | sed 's/|/, /g'; }

# --- plans ------------------------------------------------------------------
say "reporting views: plans"
PLANS=$R/plans.md
: >"$PLANS"
plan() {  # title, file, psql -v id (or empty), generic (yes/no)
    local sql
    sql=$(grep -v '^--' "$2" | sed 's/;[[:space:]]*$//')
    {
        echo "#### $1"; echo; echo '```'
        if [ "$4" = yes ]; then
            printf '%s\n' "SET plan_cache_mode = force_generic_plan;" \
                "PREPARE q AS $(printf '%s' "$sql" | sed 's/:id/$1/g');" "EXPLAIN (COSTS OFF) EXECUTE q($3);" \
                | P -d $DB
        elif [ -n "$3" ]; then
            printf 'EXPLAIN (COSTS OFF) %s;\n' "$sql" | P -d $DB -v id="$3"
        else
            printf 'EXPLAIN (COSTS OFF) %s;\n' "$sql" | P -d $DB
        fi
        echo '```'; echo
    } >>"$PLANS"
}
for v in view join; do
    echo "### Plans of the ${v}s (EXPLAIN (COSTS OFF))" >>"$PLANS"; echo >>"$PLANS"
    for q in member_scan member_owing group_scan; do
        plan "$(qtext "$Q/${q}_view.sql") ($v)" "$Q/${q}_$v.sql" "" no
    done
    for k in patron group barcode; do
        case $k in patron) id=15 ;; group) id=$G15 ;; barcode) id=29000000000015 ;; esac
        title="$(qtext "$Q/lookup_${k}_view.sql" | sed 's/:id/$1/') ($v"
        plan "$title, custom plan for \$1 = $id)" "$Q/lookup_${k}_$v.sql" "$id" no
        plan "$title, generic plan, as pgbench -M prepared may use after five executions)" "$Q/lookup_${k}_$v.sql" "$id" yes
    done
done

# --- timings ----------------------------------------------------------------
say "reporting views: whole-view queries ($RR rounds, view and join alternated)"
declare -A RT
for r in $(seq 1 "$RR"); do
    for q in member_scan member_owing group_scan; do
        for v in view join; do
            t=$(P -d $DB -c '\timing on' -f "$Q/${q}_$v.sql" | ms)
            echo "  round $r $q $v: $t ms"
            RT[$q.$v]+="$t "
        done
    done
done

say "reporting views: one-row lookups (pgbench -M prepared -c $LC -T $LT, $RR rounds, alternated)"
declare -A LK LKL
for k in patron group barcode; do
    for v in view join; do
        case $k in
            patron) echo "\\set id random(1, $N)" ;;
            group) echo "\\set id random($GMIN, $GMAX)" ;;
            barcode) echo "\\set id 29000000000000 + random(1, $N)" ;;
        esac >"$R/lookup_${k}_$v.pgb"
        grep -v '^--' "$Q/lookup_${k}_$v.sql" >>"$R/lookup_${k}_$v.pgb"
    done
done
for r in $(seq 1 "$RR"); do
    for k in patron group barcode; do
        for v in view join; do
            out=$(PB -M prepared -c "$LC" -j "$LC" -T "$LT" -f "$R/lookup_${k}_$v.pgb" -d $DB 2>&1) \
                || { echo "$out" >&2; fail "pgbench lookup_${k}_$v"; }
            t=$(echo "$out" | awk '/^tps/ {printf ($3 < 10 ? "%.3f" : "%.0f"), $3}')
            l=$(echo "$out" | awk '/latency average/ {print $4}')
            echo "  round $r lookup by $k $v: $t tps, $l ms"
            LK[$k.$v]+="$t "; LKL[$k.$v]+="$l "
        done
    done
done

say "reporting views: verify() and health() ($RR rounds)"
declare -A MT
for r in $(seq 1 "$RR"); do
    for f in verify health recount; do
        res=$(P -d $DB -At -c '\timing on' -f "$Q/$f.sql")
        t=$(echo "$res" | ms)
        echo "  round $r $f: $t ms, $(echo "$res" | head -1) rows"
        [ "$(echo "$res" | head -1)" = 0 ] || fail "$f found $(echo "$res" | head -1) rows that differ or need attention"
        MT[$f]+="$t "
    done
done

# --- the table --------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a/b}'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN{print (r <= t ? "yes" : "**no**")}'; }
log "## 7. Reporting views against hand-written joins (scale $SCALE: $N patrons)"
log ""
log "The extension attached to a copy of the generated library, \`$DB\`, with a card table and $LOST open loans marked lost (\`test/bench/reporting/library.sql\`), in $attach_time. Each query through the view (\`test/bench/reporting/<name>_view.sql\`) and through a hand-written set-based query over the library's own tables giving the same figures (\`<name>_join.sql\`); both were run once in one snapshot and their output compared, and every row of member_summary ($ROWS_member_summary) and group_summary ($ROWS_group_summary) compared with a hand-written join of the whole view: no difference."
log ""
log "| query | figures | view ms per round | join ms per round | view median ms | join median ms | view/join | target met (view/join at most 1.5) |"
log "|---|---|---|---|---|---|---|---|"
for q in member_scan member_owing group_scan; do
    a=$(echo ${RT[$q.view]} | mid); b=$(echo ${RT[$q.join]} | mid); x=$(ratio "$a" "$b")
    log "| \`$(qtext "$Q/${q}_view.sql")\` | $(figures $q) | ${RT[$q.view]}| ${RT[$q.join]}| $a | $b | ${x}x | $(met "$x" 1.5) |"
done
log ""
a=$(echo ${RT[member_scan.view]} | mid)
log "Full member_summary scan of $N patrons through the view: $a ms (target: under $((SCALE * 1000)) ms, 10 µs a patron): $(met "$a" $((SCALE * 1000)))."
log ""
log "| lookup through member_summary (pgbench -M prepared -c $LC -T $LT, random ids) | view tps per round | join tps per round | view median tps | join median tps | view median latency ms | join median latency ms | view/join (time per lookup) | target met (at most 1.5) |"
log "|---|---|---|---|---|---|---|---|---|"
for k in patron group barcode; do
    case $k in patron) w='patron_id = $1' ;; group) w='group_id = $1' ;; barcode) w='barcode = $1' ;; esac
    a=$(echo ${LK[$k.view]} | mid); b=$(echo ${LK[$k.join]} | mid); x=$(ratio "$b" "$a")
    log "| \`WHERE $w\` | ${LK[$k.view]}| ${LK[$k.join]}| $a | $b | $(echo ${LKL[$k.view]} | mid) | $(echo ${LKL[$k.join]} | mid) | ${x}x | $(met "$x" 1.5) |"
done
log ""
log "The lookups' figures were compared for $(echo $PIDS | wc -w) patron ids ($(lookup_rows patron) rows), $(echo $GIDS | wc -w) group ids ($(lookup_rows group) rows) and $(echo $BIDS | wc -w) barcodes ($(lookup_rows barcode) rows), edge cases included (no such id, a patron with two active cards or with a lost loan out, a barcode that is inactive or not the patron's greatest)."
log ""
log "| maintenance | ms per round | median ms | rows |"
log "|---|---|---|---|"
for f in verify health recount; do
    case $f in
        verify) d='`patron_group.verify()`' ;;
        health) d='`patron_group.health()`' ;;
        recount) d='reference: the totals recounted by hand (`recount.sql`: one aggregate over each attached table, compared with accounts and groups)' ;;
    esac
    log "| $d | ${MT[$f]}| $(echo ${MT[$f]} | mid) | 0 |"
done
log ""
a=$(echo ${MT[verify]} | mid)
log "verify() / hand-written recount: $(ratio "$a" "$(echo ${MT[recount]} | mid)")x. Target for verify() of the 1M-loan library (scale 1): under 2000 ms$( [ "$SCALE" = 1 ] && echo ": $(met "$a" 2000)")."
log ""
cat "$PLANS" >>"$OUT"
echo "  plans: $PLANS"
