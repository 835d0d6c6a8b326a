#!/usr/bin/python3
# psqlODBC (Debian's odbc-postgresql, unixODBC) through pyodbc (python3-pyodbc):
# the catalogue signs its lead in as the other drivers of doc/drivers.md do,
# staff look a patron up and move them (rolled back), a reporting role reads
# member_summary and its column comments (cursor.columns() remarks, and
# pg_description).  The PGD_* environment is described in test/drivers/README.md.
import hashlib, hmac, os, sys
import pyodbc

E = os.environ
POOLED = E.get("PGD_POOLED") == "1"
NAME = "psqlODBC " + ("pgbouncer" if POOLED else "direct")
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
    # psqlODBC's defaults (doc/drivers.md has no psqlODBC setting); CommLog=0:
    # Debian's odbcinst.ini turns the driver's communication log on
    return pyodbc.connect(f"DRIVER={{{E.get('PGD_ODBC_DRIVER', 'PostgreSQL Unicode')}}};"
                          f"SERVER={E['PGD_HOST']};PORT={E['PGD_PORT']};DATABASE={E['PGD_DBNAME']};"
                          f"UID={user};PWD=;CommLog=0;Debug=0", autocommit=False)


# (1) the catalogue: eight transactions on one connection, each signing in again
db, hold, backends = connect(E["PGD_OPAC"]), connect(E["PGD_OPAC"]), set()
cur, hcur = db.cursor(), hold.cursor()
for i in range(1, 9):
    if i % 2:   # another client holds a server connection: the pool must use another one
        check(f"tx {i}: the other client acts for nobody",
              hcur.execute("SELECT patron_group.current_patron()").fetchone()[0] is None)
    # autocommit off: psqlODBC opens the transaction with the first statement
    acting, pid = cur.execute("SELECT patron_group.current_patron(), pg_backend_pid()").fetchone()
    backends.add(pid)
    check(f"tx {i}: nobody asserted at its start", acting is None, f"current_patron() = {acting}")
    nonce = cur.execute("SELECT patron_group.token_nonce()").fetchone()[0]
    _, patron, expires, _ = token.split(".")
    proof = hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest()
    got = cur.execute("SELECT patron_group.act_as_proof(?, ?, ?)", int(patron), int(expires), proof).fetchone()[0]
    check(f"tx {i}: act_as_proof", got == lead, got)
    got = sorted(r[0] for r in cur.execute(
        "SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL", lead).fetchall())
    check(f"tx {i}: group_members", got == ids(E["PGD_MEMBERS"]), got)
    loans = [tuple(r) for r in cur.execute("SELECT id, patron FROM ils.circulation ORDER BY id").fetchall()]
    check(f"tx {i}: loans", [r[0] for r in loans] == ids(E["PGD_LOANS"]), loans)
    check(f"tx {i}: the consenting member's loans", int(E["PGD_CONSENTING"]) in [r[1] for r in loans])
    check(f"tx {i}: no loan of the other member", not set(r[0] for r in loans) & set(ids(E["PGD_OTHER_LOANS"])))
    bills = [r[0] for r in cur.execute("SELECT id FROM ils.billing ORDER BY id").fetchall()]
    check(f"tx {i}: bills", bills == ids(E["PGD_BILLS"]), bills)
    check(f"tx {i}: no bill of the other member", not set(bills) & set(ids(E["PGD_OTHER_BILLS"])))
    db.commit()
    if i % 2:
        hold.commit()
got = tuple(cur.execute("SELECT patron_group.current_patron(), (SELECT count(*) FROM ils.circulation)").fetchone())
check("after: acts for nobody, sees no loan", got == (None, 0), got)
db.commit()
if POOLED:
    check("the pool served the transactions from several server connections", len(backends) > 1, backends)
db.close()
hold.close()

# (2) staff: find a patron by a barcode typed badly, move them, roll back
staff = connect(E["PGD_STAFF"])
cur = staff.cursor()
moved, into = int(E["PGD_BARCODE_PATRON"]), lead
members = lambda: [r[0] for r in cur.execute(
    "SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL", lead).fetchall()]
got = tuple(cur.execute("SELECT patron_id, display_name FROM patron_group.find_patron(?)", E["PGD_BARCODE"]).fetchone())
check("find_patron", got == (moved, E["PGD_BARCODE_NAME"]), got)
try:
    got = cur.execute("SELECT patron_group.move_to_group(?, into_group_of => ?)", moved, into).fetchone()[0]
    check("move_to_group (plain parameters)", got == int(E["PGD_GROUP"]), got)
    check("group_members after the move", moved in members())
except pyodbc.Error as e:
    (findings if e.args[0] == "42725" else failures).append(
        f"move_to_group (plain parameters): {e.args[0]} {str(e.args[1]).splitlines()[0]}")
staff.rollback()
# labelled: the same move with explicit casts
got = cur.execute("SELECT patron_group.move_to_group(?::bigint, into_group_of => ?::bigint)", moved, into).fetchone()[0]
check("cast: move_to_group(?::bigint, ...)", got == int(E["PGD_GROUP"]), got)
check("cast: group_members after the move", moved in members())
staff.rollback()
check("after ROLLBACK the patron is not in the group", moved not in members())
staff.rollback()
staff.close()

# (3) reporting: member_summary with a filter; column comments
rep = connect(E["PGD_REPORTER"])
cur = rep.cursor()
rows = {r[0]: tuple(r[1:]) for r in cur.execute(
    "SELECT patron_id, is_lead, circulations_shared_now, bills_shared_now"
    " FROM patron_group.member_summary WHERE group_id = ? ORDER BY patron_id", int(E["PGD_GROUP"])).fetchall()}
check("member_summary: the group's members", sorted(rows) == ids(E["PGD_MEMBERS"]), sorted(rows))
# psqlODBC's default BoolsAsChar=1 gives booleans as the characters '1' and '0'
check("member_summary: lead and consents (booleans as '1'/'0')", rows.get(lead, (None,))[0] == "1"
      and rows.get(int(E["PGD_CONSENTING"])) == ("0", "1", "1")
      and rows.get(int(E["PGD_OTHER"])) == ("0", "0", "0"), rows)
comments = {r[0]: r[1] for r in cur.execute(
    "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
    " WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY a.attnum").fetchall()}
check("pg_description: every column has a comment", comments and all(comments.values()), comments)
check("pg_description: group_id's comment", comments.get("group_id") == E["PGD_COMMENT"], comments.get("group_id"))
# psqlODBC's SQLColumns answers REMARKS with an empty string for every
# column: the comments are only in pg_description
remarks = {r.column_name: r.remarks for r in cur.columns(table="member_summary", schema="patron_group").fetchall()}
check("columns(): every column listed", sorted(remarks) == sorted(comments), sorted(remarks))
check("columns(): remarks are all '' (psqlODBC does not read pg_description)",
      all(v == "" for v in remarks.values()), {k: v for k, v in remarks.items() if v != ""})
rep.rollback()
rep.close()

for f in findings:
    print(f"{NAME}: FINDING {f}")
for f in failures:
    print(f"{NAME}: FAIL {f}")
print(f"{NAME}: {checks - len(failures)}/{checks} checks passed, backends {len(backends)}"
      + (f", {len(findings)} finding(s)" if findings else ""))
sys.exit(1 if failures else 2 if findings else 0)
