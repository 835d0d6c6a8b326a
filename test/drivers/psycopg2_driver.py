#!/usr/bin/python3
# psycopg2 (Debian's python3-psycopg2): the catalogue signs its lead in as
# doc/drivers.md shows, staff look a patron up and move them (rolled back),
# a reporting role reads member_summary and its column comments.
# The PGD_* environment is described in test/drivers/README.md.
import hashlib, hmac, os, sys
import psycopg2
import psycopg2.errors

E = os.environ
NAME = "psycopg2 " + ("pgbouncer" if E.get("PGD_POOLED") == "1" else "direct")
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
    # psycopg2 writes parameters into the query text: behind pgbouncer nothing to set
    return psycopg2.connect(host=E["PGD_HOST"], port=E["PGD_PORT"], dbname=E["PGD_DBNAME"],
                            user=user, application_name="050_drivers psycopg2")


# (1) the catalogue: eight transactions on one connection, each signing in again
db, hold, backends = connect(E["PGD_OPAC"]), connect(E["PGD_OPAC"]), set()
for i in range(1, 9):
    if i % 2:   # another client holds a server connection: the pool must use another one
        with hold.cursor() as h:
            h.execute("SELECT patron_group.current_patron()")
            check(f"tx {i}: the other client acts for nobody", h.fetchone()[0] is None)
    with db, db.cursor() as cur:                  # one transaction, committed at the end
        cur.execute("SELECT patron_group.current_patron(), pg_backend_pid()")
        acting, pid = cur.fetchone()
        backends.add(pid)
        check(f"tx {i}: nobody asserted at its start", acting is None, f"current_patron() = {acting}")
        cur.execute("SELECT patron_group.token_nonce()")
        nonce = cur.fetchone()[0]
        _, patron, expires, _ = token.split(".")
        proof = hmac.new(token.encode(), nonce.encode(), hashlib.sha256).hexdigest()
        cur.execute("SELECT patron_group.act_as_proof(%s, %s, %s)", (int(patron), int(expires), proof))
        check(f"tx {i}: act_as_proof", cur.fetchone()[0] == lead)
        cur.execute("SELECT member_id FROM patron_group.group_members(%s) WHERE member_id IS NOT NULL", (lead,))
        got = sorted(r[0] for r in cur.fetchall())
        check(f"tx {i}: group_members", got == ids(E["PGD_MEMBERS"]), got)
        cur.execute("SELECT id, patron FROM ils.circulation ORDER BY id")
        loans = cur.fetchall()
        check(f"tx {i}: loans", [r[0] for r in loans] == ids(E["PGD_LOANS"]), loans)
        check(f"tx {i}: the consenting member's loans", int(E["PGD_CONSENTING"]) in [r[1] for r in loans])
        check(f"tx {i}: no loan of the other member", not set(r[0] for r in loans) & set(ids(E["PGD_OTHER_LOANS"])))
        cur.execute("SELECT id FROM ils.billing ORDER BY id")
        bills = [r[0] for r in cur.fetchall()]
        check(f"tx {i}: bills", bills == ids(E["PGD_BILLS"]), bills)
        check(f"tx {i}: no bill of the other member", not set(bills) & set(ids(E["PGD_OTHER_BILLS"])))
    if i % 2:
        hold.commit()
with db, db.cursor() as cur:
    cur.execute("SELECT patron_group.current_patron(), (SELECT count(*) FROM ils.circulation)")
    check("after: acts for nobody, sees no loan", cur.fetchone() == (None, 0))
if E.get("PGD_POOLED") == "1":
    check("the pool served the transactions from several server connections", len(backends) > 1, backends)
db.close()
hold.close()

# (2) staff: find a patron by a barcode typed badly, move them, roll back
staff = connect(E["PGD_STAFF"])
moved, into = int(E["PGD_BARCODE_PATRON"]), lead
def members(cur):
    cur.execute("SELECT member_id FROM patron_group.group_members(%s) WHERE member_id IS NOT NULL", (lead,))
    return [r[0] for r in cur.fetchall()]
with staff.cursor() as cur:
    cur.execute("SELECT patron_id, display_name FROM patron_group.find_patron(%s)", (E["PGD_BARCODE"],))
    check("find_patron", cur.fetchone() == (moved, E["PGD_BARCODE_NAME"]))
    try:
        cur.execute("SELECT patron_group.move_to_group(%s, into_group_of => %s)", (moved, into))
        check("move_to_group (plain parameters)", cur.fetchone()[0] == int(E["PGD_GROUP"]))
        check("group_members after the move", moved in members(cur))
    except psycopg2.Error as e:
        (findings if e.pgcode == "42725" else failures).append(
            f"move_to_group (plain parameters): {e.pgcode} {e.pgerror.splitlines()[0]}")
    staff.rollback()
    # labelled: the same move with explicit casts
    cur.execute("SELECT patron_group.move_to_group(%s::bigint, into_group_of => %s::bigint)", (moved, into))
    check("cast: move_to_group(%s::bigint, ...)", cur.fetchone()[0] == int(E["PGD_GROUP"]))
    check("cast: group_members after the move", moved in members(cur))
    staff.rollback()
    check("after ROLLBACK the patron is not in the group", moved not in members(cur))
    staff.rollback()
staff.close()

# (3) reporting: member_summary with a filter; column comments from pg_description
rep = connect(E["PGD_REPORTER"])
with rep.cursor() as cur:
    cur.execute("SELECT patron_id, is_lead, circulations_shared_now, bills_shared_now"
                " FROM patron_group.member_summary WHERE group_id = %s ORDER BY patron_id", (int(E["PGD_GROUP"]),))
    rows = {r[0]: r[1:] for r in cur.fetchall()}
    check("member_summary: the group's members", sorted(rows) == ids(E["PGD_MEMBERS"]), sorted(rows))
    check("member_summary: lead and consents", rows.get(lead, (None,))[0] is True
          and rows.get(int(E["PGD_CONSENTING"])) == (False, True, True)
          and rows.get(int(E["PGD_OTHER"])) == (False, False, False), rows)
    cur.execute("SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
                " WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0"
                " AND NOT a.attisdropped ORDER BY a.attnum")
    comments = dict(cur.fetchall())
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
