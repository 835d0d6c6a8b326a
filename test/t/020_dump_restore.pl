# Dump and restore: a database with the sample library attached, the demo's
# groups, leads, consents, history and protected tables, dumped with
# pg_dump -Fc and restored with pg_restore into a new database, dumped and
# restored in parallel (directory format, two jobs), and dumped as plain
# SQL and restored with psql.  Every table, view and total must be
# identical, verify() must find nothing, and the restored database must go
# on working: new groups and history events numbered after the last ones,
# totals kept by the restored triggers.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

load_library($node, 'library');
$node->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($node, 'library');
run_scenario($node, 'library');

# the scenario left what a dump has to carry
is( $node->safe_psql(
		'library', q{
SELECT (SELECT count(*) FROM patron_group.groups) > 1,
       (SELECT count(*) FROM patron_group.accounts WHERE is_lead) > 0,
       (SELECT count(*) FROM patron_group.accounts WHERE share_circulations) > 0,
       (SELECT count(*) FROM patron_group.history) > 10,
       (SELECT count(*) FROM patron_group.attachments WHERE protected) = 5,
       (SELECT count(*) FROM patron_group.patron_facing_roles) = 1,
       (SELECT count(*) FROM pg_policy WHERE polname LIKE 'patron_group%') > 0
}),
	't|t|t|t|t|t|t',
	'source: groups, leads, consents, history, protected tables');
is($node->safe_psql('library', 'SELECT count(*) FROM patron_group.verify()'),
	'0', 'source: verify() finds nothing');

my $source = snapshot($node, 'library');
note('source health(): ' . $node->safe_psql('library', 'SELECT * FROM patron_group.health()'));
my $tempdir = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);

# Restore checks shared by both dump formats.
sub check_restored
{
	my ($db, $how) = @_;

	my $restored = snapshot($node, $db);
	foreach my $name (sort keys %$source)
	{
		is($restored->{$name}, $source->{$name}, "$how: $name identical");
	}
	is( $node->safe_psql(
			$db, q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
		$node->safe_psql(
			'library', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
		"$how: extension version");
	is($node->safe_psql($db, 'SELECT * FROM patron_group.verify()'),
		'', "$how: verify() returns no rows");
	is($node->safe_psql($db, 'SELECT * FROM patron_group.health()'),
		$node->safe_psql('library', 'SELECT * FROM patron_group.health()'),
		"$how: health() reports what the source reports");
	is( $node->safe_psql(
			$db, q{SELECT array_agg(m ORDER BY m) FROM patron_group.attachment_status,
			                  unnest(missing) m}),
		'', "$how: attachment_status misses nothing");
	return;
}

# --- custom format, pg_restore ---------------------------------------------

command_ok(
	[ 'pg_dump', @conn, '-Fc', '-f', "$tempdir/library.dump", 'library' ],
	'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my ($ok, $stdout, $stderr) = run_cmd(
	[
		'pg_restore', @conn, '--exit-on-error', '-d', 'restored',
		"$tempdir/library.dump"
	]);
ok($ok, 'pg_restore succeeds');
is($stderr, '', 'pg_restore: no errors or warnings');

check_restored('restored', 'pg_restore');

# --- directory format, dumped and restored by two jobs ----------------------

# A parallel restore loads tables in whatever order its jobs take them, and
# the extension's accounts refer to its groups by a foreign key.  As the
# README says: the schema and the indexes in parallel, the data by one job.
command_ok(
	[ 'pg_dump', @conn, '-Fd', '-j', '2', '-f', "$tempdir/library.dir", 'library' ],
	'pg_dump -Fd -j 2');

# Restore in three steps; returns (ok, stderr of all three).
sub restore_in_sections
{
	my ($db) = @_;
	my ($all_ok, $all_err) = (1, '');
	foreach my $step ([ 'pre-data', 2 ], [ 'data', 1 ], [ 'post-data', 2 ])
	{
		my ($ok, $out, $err) = run_cmd(
			[
				'pg_restore', @conn, '-j', $step->[1], '--section', $step->[0],
				'-d', $db, "$tempdir/library.dir"
			]);
		$all_ok &&= $ok;
		$all_err .= $err;
	}
	return ($all_ok, $all_err);
}

$node->safe_psql('postgres', 'CREATE DATABASE restored_par');
($ok, $stderr) = restore_in_sections('restored_par');
ok($ok, 'pg_restore -j 2 by sections succeeds');
is($stderr, '', 'pg_restore -j 2 by sections: no errors or warnings');

check_restored('restored_par', 'pg_restore -j 2');

# which job restores which index first varies from run to run: twice more
foreach my $i (2, 3)
{
	$node->safe_psql('postgres', "CREATE DATABASE restored_par$i");
	($ok, $stderr) = restore_in_sections("restored_par$i");
	is($stderr, '', "pg_restore -j 2 by sections, run $i: no errors or warnings");
	is( $node->safe_psql("restored_par$i",
			'SELECT count(*) FROM patron_group.accounts WHERE group_id IS NOT NULL'),
		$node->safe_psql('library',
			'SELECT count(*) FROM patron_group.accounts WHERE group_id IS NOT NULL'),
		"pg_restore -j 2 by sections, run $i: every group member restored");
}

# --- plain SQL, psql --------------------------------------------------------

command_ok(
	[ 'pg_dump', @conn, '-f', "$tempdir/library.sql", 'library' ],
	'pg_dump plain');
$node->safe_psql('postgres', 'CREATE DATABASE restored_sql');
($ok, $stdout, $stderr) = run_cmd(
	[
		'psql', @conn, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'restored_sql',
		'-f', "$tempdir/library.sql"
	]);
ok($ok, 'psql restores the plain dump');
is($stderr, '', 'psql restore of the plain dump: no errors or warnings');

check_restored('restored_sql', 'plain dump');

# --- the restored databases go on working ---------------------------------

# The same work in the source and in each restored database must give the
# same new ids (identity sequences continue) and the same totals.
my $expected = after_workload($node, 'library');
note($expected);
like($expected, qr/^new group \d+$/m, 'source: workload ran');
foreach my $db ('restored', 'restored_par', 'restored_sql')
{
	is(after_workload($node, $db), $expected,
		"$db: new group, move, lead, checkout, bill and payment as in the source");
	is($node->safe_psql($db, 'SELECT * FROM patron_group.verify()'),
		'', "$db: verify() still returns no rows");
	is( $node->safe_psql(
			$db, q{SELECT max(group_id) > (SELECT max(group_id) FROM patron_group.groups
			                                WHERE label IS NOT NULL)
			         FROM patron_group.groups}),
		't', "$db: the new group is numbered after the restored ones");
}

# the whole state after the workload, except the moments things happened
my %timeless = (
	groups => q{SELECT string_agg(concat_ws(' ', group_id, label, member_count, lead_count,
	                              items_out, items_lost, amount_billed, amount_paid),
	                              E'\n' ORDER BY group_id) FROM patron_group.groups},
	accounts => q{SELECT string_agg(a::text, E'\n' ORDER BY patron_id)
	                FROM patron_group.accounts a},
	history => q{SELECT string_agg(concat_ws(' ', event_id, db_role, app_user, action,
	                               patron_id, from_group, to_group, reason, detail),
	                               E'\n' ORDER BY event_id) FROM patron_group.history});
foreach my $name (sort keys %timeless)
{
	my $want = $node->safe_psql('library', $timeless{$name});
	foreach my $db ('restored', 'restored_par', 'restored_sql')
	{
		is($node->safe_psql($db, $timeless{$name}),
			$want, "$db after the workload: $name as in the source");
	}
}

# Row-level security still narrows what the catalogue sees: Maria (lead,
# patron 1) sees her own loans and Sofia's (consent), not Jürgen's.
foreach my $db ('library', 'restored', 'restored_par', 'restored_sql')
{
	my $token = $node->safe_psql($db, q{SET ROLE signin; SELECT patron_group.issue_token(1)});
	my ($o, $e) = bound_session($node, $db, ['SET ROLE opac'], ['BEGIN'],
		['SIGN_IN', $token],
		[q{SELECT string_agg(DISTINCT patron::text, ',' ORDER BY patron::text)
		     FROM ils.circulation WHERE checkin_at IS NULL}],
		['COMMIT'], [q{SELECT count(*) FROM ils.circulation}]);
	is("$o$e", "1\n1,2\n0",
		"$db: the catalogue acting for the lead sees her and her consenting daughter's loans only"
	);
}

$node->stop;

done_testing();
