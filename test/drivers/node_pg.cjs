// node-postgres (npm's pg, found through NODE_PATH): the catalogue signs its
// lead in as doc/drivers.md shows, staff look a patron up and move them
// (rolled back), a reporting role reads member_summary and its column
// comments.  No statement is named, so none is prepared on the server.
// The PGD_* environment is described in test/drivers/README.md.
'use strict';
const crypto = require('node:crypto');
const pg = require('pg');

const E = process.env;
const POOLED = E.PGD_POOLED === '1';
const NAME = 'node-postgres ' + (POOLED ? 'pgbouncer' : 'direct');
const ids = (s) => s.split(',').filter((x) => x !== '').map(Number).sort((a, b) => a - b).join(',');
const token = E.PGD_TOKEN;
const lead = Number(token.split('.')[1]);
const failures = [], findings = [];
let checks = 0;
const check = (label, ok, detail = '') => {
  checks++;
  if (!ok) failures.push(`${label}: ${JSON.stringify(detail)}`);
};
const pool = (user) => new pg.Pool({ host: E.PGD_HOST, port: Number(E.PGD_PORT), database: E.PGD_DBNAME,
                                     user, max: 2, application_name: '050_drivers node-postgres' });
// bigint columns come back as strings: compare as numbers
const col = (rows, c) => rows.map((r) => Number(r[c]));

async function main() {
  // (1) the catalogue: eight transactions on one connection, each signing in again
  const opac = pool(E.PGD_OPAC);
  const client = await opac.connect();              // one connection for the whole transaction
  const hold = await opac.connect();
  const backends = new Set();
  const otherLoans = new Set(E.PGD_OTHER_LOANS.split(',').map(Number));
  const otherBills = new Set(E.PGD_OTHER_BILLS.split(',').map(Number));
  for (let i = 1; i <= 8; i++) {
    if (i % 2) {   // another client holds a server connection: the pool must use another one
      await hold.query('BEGIN');
      const { rows: [h] } = await hold.query('SELECT patron_group.current_patron() AS p');
      check(`tx ${i}: the other client acts for nobody`, h.p === null, h);
    }
    try {
      await client.query('BEGIN');
      const { rows: [s] } = await client.query('SELECT patron_group.current_patron() AS p, pg_backend_pid() AS pid');
      backends.add(s.pid);
      check(`tx ${i}: nobody asserted at its start`, s.p === null, s);
      const { rows: [{ nonce }] } = await client.query('SELECT patron_group.token_nonce() AS nonce');
      const [, patron, expires] = token.split('.');
      const proof = crypto.createHmac('sha256', token).update(nonce).digest('hex');
      const { rows: [a] } = await client.query('SELECT patron_group.act_as_proof($1, $2, $3) AS p',
                                                [patron, expires, proof]);
      check(`tx ${i}: act_as_proof`, Number(a.p) === lead, a);
      const m = await client.query(
        'SELECT member_id FROM patron_group.group_members($1) WHERE member_id IS NOT NULL', [lead]);
      check(`tx ${i}: group_members`, ids(col(m.rows, 'member_id').join(',')) === E.PGD_MEMBERS, m.rows);
      const { rows: loans } = await client.query('SELECT id, patron FROM ils.circulation ORDER BY id');
      check(`tx ${i}: loans`, col(loans, 'id').join(',') === E.PGD_LOANS, loans);
      check(`tx ${i}: the consenting member's loans`, col(loans, 'patron').includes(Number(E.PGD_CONSENTING)));
      check(`tx ${i}: no loan of the other member`, !col(loans, 'id').some((x) => otherLoans.has(x)));
      const { rows: bills } = await client.query('SELECT id FROM ils.billing ORDER BY id');
      check(`tx ${i}: bills`, col(bills, 'id').join(',') === E.PGD_BILLS, bills);
      check(`tx ${i}: no bill of the other member`, !col(bills, 'id').some((x) => otherBills.has(x)));
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK');
      throw e;
    }
    if (i % 2) await hold.query('COMMIT');
  }
  const { rows: [after] } = await client.query(
    'SELECT patron_group.current_patron() AS p, (SELECT count(*) FROM ils.circulation) AS n');
  check('after: acts for nobody, sees no loan', after.p === null && Number(after.n) === 0, after);
  if (POOLED) check('the pool served the transactions from several server connections', backends.size > 1, [...backends]);
  client.release();
  hold.release();
  await opac.end();

  // (2) staff: find a patron by a barcode typed badly, move them, roll back
  const staffPool = pool(E.PGD_STAFF);
  const staff = await staffPool.connect();
  const moved = Number(E.PGD_BARCODE_PATRON);
  const members = async () => col((await staff.query(
    'SELECT member_id FROM patron_group.group_members($1) WHERE member_id IS NOT NULL', [lead])).rows, 'member_id');
  await staff.query('BEGIN');
  const { rows: [found] } = await staff.query(
    'SELECT patron_id, display_name FROM patron_group.find_patron($1)', [E.PGD_BARCODE]);
  check('find_patron', Number(found.patron_id) === moved && found.display_name === E.PGD_BARCODE_NAME, found);
  try {
    const { rows: [g] } = await staff.query('SELECT patron_group.move_to_group($1, into_group_of => $2) AS g',
                                            [moved, lead]);
    check('move_to_group (plain parameters)', Number(g.g) === Number(E.PGD_GROUP), g);
    check('group_members after the move', (await members()).includes(moved));
  } catch (e) {
    if (!e.code) throw e;
    (e.code === '42725' ? findings : failures).push(
      `move_to_group (plain parameters): ${e.code} ${e.severity}:  ${e.message}`);
  }
  await staff.query('ROLLBACK');
  // labelled: the same move with explicit casts
  await staff.query('BEGIN');
  const { rows: [g] } = await staff.query(
    'SELECT patron_group.move_to_group($1::bigint, into_group_of => $2::bigint) AS g', [moved, lead]);
  check('cast: move_to_group($1::bigint, ...)', Number(g.g) === Number(E.PGD_GROUP), g);
  check('cast: group_members after the move', (await members()).includes(moved));
  await staff.query('ROLLBACK');
  check('after ROLLBACK the patron is not in the group', !(await members()).includes(moved));
  staff.release();
  await staffPool.end();

  // (3) reporting: member_summary with a filter; column comments from pg_description
  const rep = pool(E.PGD_REPORTER);
  const { rows } = await rep.query(
    'SELECT patron_id, is_lead, circulations_shared_now AS c, bills_shared_now AS b' +
    ' FROM patron_group.member_summary WHERE group_id = $1 ORDER BY patron_id', [E.PGD_GROUP]);
  const by = Object.fromEntries(rows.map((r) => [Number(r.patron_id), [r.is_lead, r.c, r.b].join()]));
  check("member_summary: the group's members", col(rows, 'patron_id').join(',') === E.PGD_MEMBERS, rows);
  check('member_summary: lead and consents', String(by[lead]).startsWith('true')
        && by[E.PGD_CONSENTING] === 'false,true,true' && by[E.PGD_OTHER] === 'false,false,false', by);
  const { rows: c } = await rep.query(
    "SELECT a.attname, col_description(a.attrelid, a.attnum) AS d FROM pg_attribute a" +
    " WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0" +
    ' AND NOT a.attisdropped ORDER BY a.attnum');
  check('pg_description: every column has a comment', c.length > 0 && c.every((r) => r.d !== null), c);
  const gc = (c.find((r) => r.attname === 'group_id') || {}).d;
  check("pg_description: group_id's comment", gc === E.PGD_COMMENT, gc);
  await rep.end();

  for (const f of findings) console.log(`${NAME}: FINDING ${f}`);
  for (const f of failures) console.log(`${NAME}: FAIL ${f}`);
  console.log(`${NAME}: ${checks - failures.length}/${checks} checks passed, backends ${backends.size}` +
              (findings.length ? `, ${findings.length} finding(s)` : ''));
  return failures.length ? 1 : findings.length ? 2 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.log(`${NAME}: FAIL ${e.code || ''} ${e.message}`);
  process.exit(1);
});
