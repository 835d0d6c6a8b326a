# Drop and recreate: DROP EXTENSION is refused while library system tables
# are attached, with a message that says to run detach_all() first; after
# detach_all() the extension drops without CASCADE and leaves the library's
# tables exactly as a library that never had it (no trigger, policy,
# barcode index or row-level security), their data untouched; created and
# attached again it counts the same totals.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('drop');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

# The library's own objects, by name: triggers, policies, indexes,
# row-level security and privileges of its tables.
my $ils_catalog = q{
SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname
  FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'policy ' || polrelid::regclass || ' ' || polname FROM pg_policy
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index
 WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'ils'::regnamespace)
UNION ALL
SELECT format('table %s rowsecurity=%s force=%s acl=%s', oid::regclass, relrowsecurity,
              relforcerowsecurity, relacl)
  FROM pg_class WHERE relnamespace = 'ils'::regnamespace AND relkind = 'r'
ORDER BY 1
};
my $ils_data = join(
	"\nUNION ALL\n",
	map {
		"SELECT '$_ ' || md5(string_agg(t::text, '|' ORDER BY t.id)) FROM ils.$_ t"
	} qw(library patron card item circulation transaction billing payment));
my $patron_totals = q{
SELECT string_agg(concat_ws(' ', patron_id, items_out, items_lost, amount_billed, amount_paid),
                  E'\n' ORDER BY patron_id)
  FROM patron_group.accounts};

# The library's own row-level security on one table that protect() will
# protect too: detaching must leave it as it was.
my $own_rls = q{
ALTER TABLE ils.billing ENABLE ROW LEVEL SECURITY;
CREATE POLICY library_own ON ils.billing USING (note <> 'internal');
};

# A library that never had the extension, with the grants the demo's
# scenario makes: what the library must look like after the drop.
load_library($node, 'pristine');
$node->safe_psql(
	'pristine', q{
CREATE ROLE opac;
GRANT USAGE ON SCHEMA ils TO opac;
GRANT SELECT ON ALL TABLES IN SCHEMA ils TO opac;
} . $own_rls);
my $pristine = $node->safe_psql('pristine', $ils_catalog);
like($pristine, qr/^index CREATE INDEX circulation_patron_idx/m,
	'the catalog listing sees the library\'s indexes');

load_library($node, 'library');
$node->safe_psql('library', $own_rls);
$node->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($node, 'library');
run_scenario($node, 'library');

my $attached = $node->safe_psql('library', $ils_catalog);
like($attached, qr/^trigger ils\.circulation patron_group_/m,
	'attached: triggers on the library\'s tables');
like($attached, qr/^policy ils\.circulation patron_group_/m,
	'attached: policies on the library\'s tables');
like($attached, qr/^index .*normalize_barcode/m, 'attached: barcode index');
like($attached, qr/^table ils\.circulation rowsecurity=t /m,
	'attached: row-level security on');

my $data_before = $node->safe_psql('library', $ils_data);
my $totals_before = $node->safe_psql('library', $patron_totals);
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 'attached: verify() returns no rows');

# --- refused while attached ------------------------------------------------

foreach my $drop (
	'DROP EXTENSION patron_group',
	'DROP EXTENSION patron_group CASCADE',
	'DROP EXTENSION IF EXISTS patron_group RESTRICT',
	'DROP EXTENSION IF EXISTS no_such_extension, patron_group CASCADE')
{
	my ($ret, $stdout, $stderr) =
	  $node->psql('library', "\\set VERBOSITY verbose\n$drop");
	isnt($ret, 0, "$drop: refused");
	like($stderr, qr/ERROR:  2BP01: /, "$drop: SQLSTATE 2BP01");
	like($stderr, qr/patron_group/, "$drop: the message names the extension");
	like($stderr, qr/HINT: .*detach_all\(\)/, "$drop: the hint says to run detach_all()");
}
my ($ret, $stdout, $stderr) =
  $node->psql('library', "\\set VERBOSITY verbose\nDROP EXTENSION patron_group");
note("the refusal:\n$stderr");

is($node->safe_psql('library', $ils_catalog),
	$attached, 'refused drops changed nothing on the library\'s tables');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_extension WHERE extname = 'patron_group'}),
	'1', 'the extension is still there');
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 'after the refused drops: verify() returns no rows');

# the refusal inside a transaction leaves the transaction to roll back, and
# changes inside it are not half-applied
($ret, $stdout, $stderr) = $node->psql(
	'library', q{
BEGIN;
SELECT patron_group.detach('ils.payment');
DROP EXTENSION patron_group;
COMMIT;
});
isnt($ret, 0, 'DROP EXTENSION with one table still attached: refused');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM patron_group.attachments}),
	'5', 'the transaction that tried it rolled back: five tables attached');

# --- detach_all(), then DROP EXTENSION -------------------------------------

# A DBA removing a damaged installation: one trigger already dropped by hand.
$node->safe_psql('library',
	'DROP TRIGGER patron_group_totals_update ON ils.payment');
like( $node->safe_psql('library', 'SELECT check_name FROM patron_group.health()'),
	qr/missing trigger/, 'health() sees the trigger dropped by hand');

is($node->safe_psql('library', 'SELECT patron_group.detach_all()'),
	'5', 'detach_all() detaches the five attached tables');
is($node->safe_psql('library', 'SELECT count(*) FROM patron_group.attachments'),
	'0', 'nothing is attached any more');

# no CASCADE: nothing outside the extension may depend on it any more
$node->safe_psql('library', 'DROP EXTENSION patron_group');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_extension WHERE extname = 'patron_group'}),
	'0', 'DROP EXTENSION succeeds after detach_all()');
# CREATE EXTENSION made the schema named in the control file, which is
# not a member of the extension and stays, empty
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_class WHERE relnamespace = 'patron_group'::regnamespace
		             UNION ALL
		             SELECT count(*) FROM pg_proc WHERE pronamespace = 'patron_group'::regnamespace}),
	"0\n0", 'nothing is left in the patron_group schema');

my $dropped = $node->safe_psql('library', $ils_catalog);
is($dropped, $pristine,
	'the library\'s tables look as if the extension had never been there');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		             WHERE c.relnamespace = 'ils'::regnamespace AND NOT t.tgisinternal}),
	'0', 'pg_trigger: no trigger left on the library\'s tables');
is( $node->safe_psql(
		'library', q{SELECT string_agg(polrelid::regclass || ' ' || polname, ',')
		               FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
		              WHERE c.relnamespace = 'ils'::regnamespace}),
	'ils.billing library_own', 'pg_policy: only the library\'s own policy left');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		             WHERE c.relnamespace = 'ils'::regnamespace AND i.indexprs IS NOT NULL}),
	'0', 'pg_index: no barcode index left');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_class
		             WHERE relnamespace = 'ils'::regnamespace
		               AND (relrowsecurity OR relforcerowsecurity)
		               AND relname <> 'billing'}),
	'0', 'pg_class: row-level security off on every table but the one the library protects');
is( $node->safe_psql(
		'library', q{SELECT relrowsecurity FROM pg_class WHERE oid = 'ils.billing'::regclass}),
	't', 'pg_class: the library\'s own row-level security on ils.billing kept');
is($node->safe_psql('library', $ils_data),
	$data_before, 'the library\'s data is untouched');

# the catalogue role sees every row again, and the library's tables take
# writes without the extension's functions
is( $node->safe_psql(
		'library', q{SET ROLE opac; SELECT count(*) FROM ils.circulation}),
	$node->safe_psql('library', 'SELECT count(*) FROM ils.circulation'),
	'the catalogue role reads every loan again');
$node->safe_psql(
	'library', q{
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
VALUES (6, 460, now(), now() + interval '21 days');
UPDATE ils.payment SET voided = NOT voided WHERE id = (SELECT min(id) FROM ils.payment);
UPDATE ils.payment SET voided = NOT voided WHERE id = (SELECT min(id) FROM ils.payment);
INSERT INTO ils.patron (family_name, given_name, home_library) VALUES ('Reyes', 'Ines', 1);
});
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM ils.circulation WHERE item = 460 AND checkin_at IS NULL}),
	'1', 'a checkout without the extension');

# --- CREATE EXTENSION again and re-attach ------------------------------------

$node->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($node, 'library');
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 're-attached: verify() returns no rows');

# the same totals as before the drop, apart from the two changes made since
my $totals_after = $node->safe_psql('library', $patron_totals);
my @want = map {
	my @f = split / /;
	$f[1]++ if $f[0] eq '6';    # the checkout made without the extension
	join(' ', @f)
} split /\n/, $totals_before;
push @want,
  $node->safe_psql('library', 'SELECT max(id) FROM ils.patron') . ' 0 0 0 0';
my $want = join("\n", @want);
is($totals_after, $want,
	're-attached: every patron\'s totals as before the drop, with the checkout and the new patron');
like($node->safe_psql('library', $ils_catalog),
	qr/^trigger ils\.circulation patron_group_/m,
	're-attached: triggers back on the library\'s tables');
is( $node->safe_psql(
		'library', q{SELECT patron_id, display_name FROM patron_group.find_patron('29000000000060')}),
	'6|Okafor, Grace', 're-attached: find_patron() uses the barcode index again');
is( $node->safe_psql(
		'library', q{SELECT array_agg(m) FROM patron_group.attachment_status, unnest(missing) m}),
	'', 're-attached: attachment_status misses nothing');

# and it works: a group and a checkout counted
$node->safe_psql(
	'library', q{
SELECT patron_group.move_to_group(7, into_group_of => 6);
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
VALUES (7, 461, now(), now() + interval '21 days');
});
is( $node->safe_psql(
		'library', q{
SELECT g.group_id, g.member_count, g.items_out = (SELECT count(*) FROM ils.circulation
                                                  WHERE patron IN (6, 7) AND checkin_at IS NULL)
  FROM patron_group.groups g}),
	'1|2|t', 're-created: group 1 counts both members\' loans');
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 're-created: verify() returns no rows after the new work');

$node->stop;

done_testing();
