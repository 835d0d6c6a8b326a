-- Run by scripts/package_test.sh against the installed Debian package, not
-- by make test: the extension made from the package's files is the default
-- version, loads its C library, normalizes barcodes with ICU, keeps a
-- group's totals and history, and goes away cleanly.
CREATE EXTENSION patron_group;
SELECT e.extversion = a.default_version AS default_version_installed,
       e.extnamespace::regnamespace AS schema
  FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
 WHERE e.extname = 'patron_group';
SELECT probin FROM pg_proc WHERE oid = 'patron_group.normalize_barcode(text)'::regprocedure;

-- the C library and ICU: full-width digits and spaces as a scanner may send them
SELECT patron_group.normalize_barcode('２９０００ ０００００００２９') AS normalized;

CREATE SCHEMA pkg;
CREATE TABLE pkg.patron (id bigint PRIMARY KEY, barcode text NOT NULL, name text NOT NULL);
CREATE TABLE pkg.loan (id serial PRIMARY KEY, patron bigint NOT NULL REFERENCES pkg.patron,
                       due timestamptz NOT NULL, returned timestamptz);
CREATE INDEX ON pkg.loan (patron);
INSERT INTO pkg.patron VALUES (1, '29000000000011', 'Alvarez, Maria'),
    (2, '29000000000029', 'Alvarez, Sofia'), (3, '29000000000037', 'Chen, Wei');
INSERT INTO pkg.loan (patron, due) VALUES (1, now() + interval '1 week'),
    (2, now() - interval '1 day'), (2, now() + interval '2 weeks'), (3, now() + interval '3 days');
SELECT patron_group.attach_patrons('pkg.patron', barcode_column => 'barcode', name_columns => '{name}') IS NOT NULL AS attached;
SELECT patron_group.attach_circulations('pkg.loan', 'patron', 'due', open_when => 'returned IS NULL') IS NOT NULL AS attached;

SELECT patron_id, display_name, group_size FROM patron_group.find_patron('２９０００ ０００００００２９');
SELECT patron_group.move_to_group(2, into_group_of => 1, reason => 'daughter') IS NOT NULL AS moved;
SELECT patron_group.set_lead(1) IS NOT NULL AS lead_set;
SELECT member_id, display_name, is_lead, items_out, items_overdue FROM patron_group.group_members(1);
-- Sofia returns the overdue book: the group's figures follow
UPDATE pkg.loan SET returned = now() WHERE patron = 2 AND due < now();
SELECT member_id, display_name, items_out, items_overdue FROM patron_group.group_members(1);
SELECT action, patron_id, reason FROM patron_group.history ORDER BY event_id;
SELECT * FROM patron_group.verify();

SELECT patron_group.detach_all() IS NOT NULL AS detached;
DROP EXTENSION patron_group;
SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'patron_group') AS extensions_left,
       (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'patron_group') AS functions_left,
       (SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal
         AND tgrelid IN ('pkg.patron'::regclass, 'pkg.loan'::regclass)) AS triggers_left;
DROP TABLE pkg.loan, pkg.patron;
DROP SCHEMA pkg;
