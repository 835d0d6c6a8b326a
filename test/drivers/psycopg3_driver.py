#!/usr/bin/python3
# psycopg 3 (Debian's python3-psycopg): the catalogue signs its lead in as
# doc/drivers.md shows, staff look a patron up and move them (rolled back),
# a reporting role reads member_summary and its column comments.
# The PGD_* environment is described in test/drivers/README.md.
import hashlib, hmac, os, sys
import psycopg

E = os.environ
POOLED = E.get("PGD_POOLED") == "1"
NAME = "psycopg 3 " + ("pgbouncer" if POOLED else "direct")
ids = lambda s: sorted(int(x) for x in s.split(",") if x)
token = E["PGD_TOKEN"]
lead = int(token.split(".")[1])
failures, findings, checks = [], [], 0


def check(label, ok, detail=""):
    global checks
    checks += 1
    if not ok:
        failures.append(f"{label}: {detail}")


def connect(user):
    # behind pgbouncer: prepare_threshold=None (doc/drivers.md); directly, psycopg's default
    extra = {"prepare_threshold": None} if POOLED else {}
    return psycopg.connect(host=E["PGD_HOST"], port=E["PGD_PORT"], dbname=E["PGD_DBNAME"], user=user,
                           application_name="050_drivers psycopg3", autocommit=True, **extra)


# (1) the catalogue: eight transactions on one connection, each signing in again
conn, hold, backends = connect(E["PGD_OPAC"]), connect(E["PGD_OPAC"]), set()
hold.autocommit = False
for i in range(1, 9):
    if i % 2:   # another client holds a server connection: the pool must use another one
        acting = hold.execute("SELECT patron_group.current_patron()").fetchone()[0]
        check(f"tx {i}: the other client acts for nobody", acting is None)
    with conn.transaction():                          # BEGIN ... COMMIT
        acting, pid = conn.execute("SELECT patron_group.current_patron(), pg_backend_pid()").fetchone()
        backends.add(pid)
        check(f"tx {i}: nobody asserted at its start", acting is None, f"current_patron() = {acting}")
        nonce = conn.execute("SELECT patron_group.token_nonce()").fetchone()[0]
        _, patron, expires, _ = token.split(".")
        proof = hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest()
        got = conn.execute("SELECT patron_group.act_as_proof(%s, %s, %s)", (int(patron), int(expires), proof)).fetchone()
        check(f"tx {i}: act_as_proof", got[0] == lead)
        got = sorted(r[0] for r in conn.execute(
            "SELECT member_id FROM patron_group.group_members(%s) WHERE member_id IS NOT NULL", (lead,)))
        check(f"tx {i}: group_members", got == ids(E["PGD_MEMBERS"]), got)
        loans = conn.execute("SELECT id, patron FROM ils.circulation ORDER BY id").fetchall()
        check(f"tx {i}: loans", [r[0] for r in loans] == ids(E["PGD_LOANS"]), loans)
        check(f"tx {i}: the consenting member's loans", int(E["PGD_CONSENTING"]) in [r[1] for r in loans])
        check(f"tx {i}: no loan of the other member", not set(r[0] for r in loans) & set(ids(E["PGD_OTHER_LOANS"])))
        bills = [r[0] for r in conn.execute("SELECT id FROM ils.billing ORDER BY id")]
        check(f"tx {i}: bills", bills == ids(E["PGD_BILLS"]), bills)
        check(f"tx {i}: no bill of the other member", not set(bills) & set(ids(E["PGD_OTHER_BILLS"])))
    if i % 2:
        hold.commit()
got = conn.execute("SELECT patron_group.current_patron(), (SELECT count(*) FROM ils.circulation)").fetchone()
check("after: acts for nobody, sees no loan", tuple(got) == (None, 0), got)
if POOLED:
    check("the pool served the transactions from several server connections", len(backends) > 1, backends)
conn.close()
hold.close()

# (2) staff: find a patron by a barcode typed badly, move them, roll back
staff = connect(E["PGD_STAFF"])
staff.autocommit = False
moved, into = int(E["PGD_BARCODE_PATRON"]), lead
members = lambda: [r[0] for r in staff.execute(
    "SELECT member_id FROM patron_group.group_members(%s) WHERE member_id IS NOT NULL", (lead,))]
got = staff.execute("SELECT patron_id, display_name FROM patron_group.find_patron(%s)", (E["PGD_BARCODE"],)).fetchone()
check("find_patron", tuple(got) == (moved, E["PGD_BARCODE_NAME"]), got)
try:
    got = staff.execute("SELECT patron_group.move_to_group(%s, into_group_of => %s)", (moved, into)).fetchone()
    check("move_to_group (plain parameters)", got[0] == int(E["PGD_GROUP"]), got)
    check("group_members after the move", moved in members())
except psycopg.Error as e:
    (findings if e.sqlstate == "42725" else failures).append(
        f"move_to_group (plain parameters): {e.sqlstate} {str(e).splitlines()[0]}")
staff.rollback()
# labelled: the same move with explicit casts
got = staff.execute("SELECT patron_group.move_to_group(%s::bigint, into_group_of => %s::bigint)", (moved, into)).fetchone()
check("cast: move_to_group(%s::bigint, ...)", got[0] == int(E["PGD_GROUP"]), got)
check("cast: group_members after the move", moved in members())
staff.rollback()
check("after ROLLBACK the patron is not in the group", moved not in members())
staff.rollback()
staff.close()

# (3) reporting: member_summary with a filter; column comments from pg_description
rep = connect(E["PGD_REPORTER"])
rows = {r[0]: tuple(r[1:]) for r in rep.execute(
    "SELECT patron_id, is_lead, circulations_shared_now, bills_shared_now"
    " FROM patron_group.member_summary WHERE group_id = %s ORDER BY patron_id", (int(E["PGD_GROUP"]),))}
check("member_summary: the group's members", sorted(rows) == ids(E["PGD_MEMBERS"]), sorted(rows))
check("member_summary: lead and consents", rows.get(lead, (None,))[0] is True
      and rows.get(int(E["PGD_CONSENTING"])) == (False, True, True)
      and rows.get(int(E["PGD_OTHER"])) == (False, False, False), rows)
comments = dict(rep.execute(
    "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
    " WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY a.attnum").fetchall())
check("pg_description: every column has a comment", comments and all(comments.values()), comments)
check("pg_description: group_id's comment", comments.get("group_id") == E["PGD_COMMENT"], comments.get("group_id"))
rep.close()

for f in findings:
    print(f"{NAME}: FINDING {f}")
for f in failures:
    print(f"{NAME}: FAIL {f}")
print(f"{NAME}: {checks - len(failures)}/{checks} checks passed, backends {len(backends)}"
      + (f", {len(findings)} finding(s)" if findings else ""))
sys.exit(1 if failures else 2 if findings else 0)
