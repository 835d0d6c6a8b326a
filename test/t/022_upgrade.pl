# Upgrade: install 1.0, attach the sample library, walk the demo's scenario
# and grant a staff role, then ALTER EXTENSION patron_group UPDATE.  The
# upgraded database must hold the same data, find nothing in verify(),
# serve the new views, and be the same as a fresh install of the current
# version: the same objects, definitions, privileges (initial ones too, as
# pg_dump relies on them), and the same behaviour for the same work.  A dump
# of the upgraded database must restore with staff's privileges intact.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

# Compare two catalog listings; on a difference, show the lines that differ.
sub same_catalog
{
	my ($got, $want, $name) = @_;
	ok($got eq $want, $name);
	return if $got eq $want;
	my %g = map { $_ => 1 } split /\n/, $got;
	my %w = map { $_ => 1 } split /\n/, $want;
	diag("only in the first: $_") foreach grep { !$w{$_} } sort keys %g;
	diag("only in the second: $_") foreach grep { !$g{$_} } sort keys %w;
	# both in full beside the test's log, for diff
	(my $file = $name) =~ s/\W+/_/g;
	append_to_file("$PostgreSQL::Test::Utils::log_path/${file}_1.txt", "$got\n");
	append_to_file("$PostgreSQL::Test::Utils::log_path/${file}_2.txt", "$want\n");
	return;
}

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

$node->safe_psql('postgres', 'CREATE ROLE staff LOGIN');

my $default_version = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'patron_group'});
is($default_version, '1.1', 'the default version is 1.1');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(source || '>' || target || ' ' || path, ',' ORDER BY source, target)
  FROM pg_extension_update_paths('patron_group') WHERE path IS NOT NULL}),
	'1.0>1.1 1.0--1.1',
	'the update path from 1.0');

# --- 1.0, in use -------------------------------------------------------------

load_library($node, 'upgraded');
$node->safe_psql('upgraded', q{CREATE EXTENSION patron_group VERSION '1.0'});
is( $node->safe_psql(
		'upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
	'1.0', 'installed 1.0');
attach_library($node, 'upgraded');
run_scenario($node, 'upgraded', changes_only => 1);
$node->safe_psql('upgraded', q{SELECT patron_group.grant_staff('staff')});
$node->safe_psql('upgraded', 'GRANT USAGE ON SCHEMA ils TO staff; GRANT SELECT ON ALL TABLES IN SCHEMA ils TO staff');
is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
	'', '1.0: verify() returns no rows');

my $before = snapshot($node, 'upgraded', no_views => 1);
my $barcode_indexes = $node->safe_psql('upgraded',
	q{SELECT string_agg(barcode_index::text, ',' ORDER BY relid::text)
	    FROM patron_group.attachments WHERE barcode_index IS NOT NULL});
isnt($barcode_indexes, '', '1.0: the barcode indexes are recorded');

# a dump taken under 1.0, to be restored where 1.1 is installed (moving a
# library to a new server with the new version)
my $tempdir = PostgreSQL::Test::Utils::tempdir;
my @conn = ('-h', $node->host, '-p', $node->port);
command_ok([ 'pg_dump', @conn, '-Fc', '-f', "$tempdir/v10.dump", 'upgraded' ],
	'pg_dump of the database under 1.0');

# --- the upgrade -------------------------------------------------------------

my ($ret, $stdout, $stderr) =
  $node->psql('upgraded', 'ALTER EXTENSION patron_group UPDATE');
is($ret, 0, 'ALTER EXTENSION patron_group UPDATE succeeds');
is($stderr, '', 'ALTER EXTENSION UPDATE: no warnings');
is( $node->safe_psql(
		'upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
	'1.1', 'upgraded to 1.1');

my $after = snapshot($node, 'upgraded', no_views => 1);
foreach my $name (sort keys %$before)
{
	next if $name eq 'privileges';    # new functions and views, compared below
	is($after->{$name}, $before->{$name}, "upgrade kept $name");
}
is( $node->safe_psql(
		'upgraded', q{SELECT string_agg(barcode_index, ',' ORDER BY relid::text)
		                FROM patron_group.attachments WHERE barcode_index IS NOT NULL}),
	$barcode_indexes, 'the barcode indexes are recorded by name');
is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
	'', '1.1: verify() returns no rows');

# the new views and functions over the data made under 1.0
is( $node->safe_psql(
		'upgraded', q{
SELECT string_agg(concat_ws(' ', group_id, label, member_count, lead_count, items_out,
                            items_lost, amount_billed, amount_paid), E'\n' ORDER BY group_id)
  FROM patron_group.group_summary}),
	$node->safe_psql(
		'upgraded', q{
SELECT string_agg(concat_ws(' ', group_id, label, member_count, lead_count, items_out,
                            items_lost, amount_billed, amount_paid), E'\n' ORDER BY group_id)
  FROM patron_group.groups}),
	'group_summary gives the groups\' figures');
is( $node->safe_psql(
		'upgraded', q{
SELECT s.items_overdue = (SELECT count(*) FROM ils.circulation c
                           WHERE c.patron IN (SELECT patron_id FROM patron_group.accounts
                                               WHERE group_id = s.group_id)
                             AND c.checkin_at IS NULL AND c.due_at < now()
                             AND c.stop_fines IS DISTINCT FROM 'LOST')
  FROM patron_group.group_summary s WHERE s.group_id = 1}),
	't', 'group_summary counts the Alvarez family\'s overdue loans');
is( $node->safe_psql(
		'upgraded', q{
SELECT count(*), count(barcode), count(display_name), sum(items_out)
  FROM patron_group.member_summary}),
	$node->safe_psql(
		'upgraded', q{
SELECT count(*), count(*), count(*), sum(items_out) FROM patron_group.accounts}),
	'member_summary: every patron with barcode and name');
is( $node->safe_psql(
		'upgraded', q{
SELECT barcode, display_name, group_label, is_lead, share_circulations
  FROM patron_group.member_summary WHERE patron_id IN (1, 2) ORDER BY patron_id}),
	"29000000000011|Alvarez, Maria|Alvarez family|t|f\n"
	  . "29000000000029|Alvarez, Sofia|Alvarez family|f|t",
	'member_summary: Maria the lead, Sofia sharing her loans');
is( $node->safe_psql(
		'upgraded', q{SELECT count(*) FROM patron_group.membership_history}),
	$node->safe_psql('upgraded', q{SELECT count(*) FROM patron_group.history}),
	'membership_history: every event');
is( $node->safe_psql(
		'upgraded', q{SELECT count(*) FROM patron_group.attachment_status
		               WHERE cardinality(missing) = 0}),
	'5', 'attachment_status: five tables, nothing missing');

# staff granted under 1.0 read the new views and run health() once
# grant_staff() is run again after the update, as the README says
$node->safe_psql('upgraded', q{SELECT patron_group.grant_staff('staff')});
is( $node->safe_psql(
		'upgraded', q{SELECT count(*) > 0 FROM patron_group.group_summary},
		connstr => $node->connstr('upgraded') . ' user=staff'),
	't', 'staff granted under 1.0 read group_summary');
is( $node->safe_psql(
		'upgraded', q{SELECT count(*) >= 0 FROM patron_group.health()},
		connstr => $node->connstr('upgraded') . ' user=staff'),
	't', 'staff granted under 1.0 run health()');

# --- a fresh install of 1.1 with the same history ----------------------------

load_library($node, 'fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION patron_group');
attach_library($node, 'fresh');
run_scenario($node, 'fresh', changes_only => 1);
$node->safe_psql('fresh', q{SELECT patron_group.grant_staff('staff')});
$node->safe_psql('fresh', 'GRANT USAGE ON SCHEMA ils TO staff; GRANT SELECT ON ALL TABLES IN SCHEMA ils TO staff');

my $cat_upgraded = extension_catalog($node, 'upgraded');
my $cat_fresh = extension_catalog($node, 'fresh');
like($cat_fresh, qr/^view group_summary /m, 'the catalog listing sees the views');
like($cat_fresh, qr/^initial privileges /m, 'the catalog listing sees initial privileges');
same_catalog($cat_upgraded, $cat_fresh,
	'the upgraded extension\'s objects are those of a fresh install');

# the same data: what does not depend on when it was made
foreach my $q (
	q{SELECT string_agg(a::text, E'\n' ORDER BY patron_id) FROM patron_group.accounts a},
	q{SELECT string_agg(concat_ws(' ', group_id, label, member_count, lead_count, items_out,
	                              items_lost, amount_billed, amount_paid), E'\n' ORDER BY group_id)
	    FROM patron_group.group_summary},
	q{SELECT string_agg(concat_ws(' ', event_id, action, patron_id, barcode, display_name,
	                              from_group, to_group, to_group_label, reason, detail),
	                    E'\n' ORDER BY event_id) FROM patron_group.membership_history},
	q{SELECT string_agg(concat_ws(' ', patron_id, barcode, display_name, group_id, is_lead,
	                              items_out, items_overdue, balance_owed), E'\n' ORDER BY patron_id)
	    FROM patron_group.member_summary},
	q{SELECT string_agg(concat_ws(' ', attached_table, kind, mapping, triggers, policies,
	                              row_security, patron_or_barcode_index, missing),
	                    E'\n' ORDER BY attached_table::text) FROM patron_group.attachment_status},
	q{SELECT string_agg(concat_ws(' ', check_name, severity, subject, detail, fix), E'\n')
	    FROM patron_group.health()})
{
	my ($from) = $q =~ /FROM (patron_group\.\w+(?:\(\))?)/;
	is($node->safe_psql('upgraded', $q),
		$node->safe_psql('fresh', $q), "upgraded and fresh: $from identical");
}

# the same work gives the same results
my $work_fresh = after_workload($node, 'fresh');
like($work_fresh, qr/^new group \d+$/m, 'fresh: workload ran');
is(after_workload($node, 'upgraded'),
	$work_fresh, 'upgraded: the same work gives the same groups, totals and history');
is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
	'', 'upgraded: verify() returns no rows after the work');

# the upgrade reindexed the barcode indexes: lookups go on finding patrons
is( $node->safe_psql(
		'upgraded', q{SELECT patron_id FROM patron_group.find_patron(' 2900 0000 0000 60 ')}),
	'6', 'upgraded: find_patron() through the barcode index');
is( $node->safe_psql(
		'upgraded', q{
SET enable_seqscan = off;
SELECT count(*) FROM ils.card
 WHERE patron_group.normalize_barcode(barcode) = patron_group.normalize_barcode('29000000000060')}),
	'1', 'upgraded: the barcode index answers after the upgrade');
is( $node->safe_psql(
		'upgraded', q{SELECT count(*) FROM pg_index WHERE NOT indisvalid}),
	'0', 'upgraded: every index valid');

# Staff rights go to staff only: the catalogue's patron-facing role (which
# may run group_members()) has none in a fresh install and gets none from
# the upgrade.  (Last, as a refused call still uses up an event number.)
foreach my $db ('fresh', 'upgraded')
{
	foreach my $sql (
		'SELECT patron_group.move_to_group(3, 6)',
		'SELECT count(*) FROM patron_group.accounts',
		'SELECT count(*) FROM patron_group.health()')
	{
		# rolled back, so that the comparisons below hold even if allowed
		my ($r, $o, $e) =
		  $node->psql($db, "BEGIN; SET ROLE opac; $sql; ROLLBACK;");
		like($e, qr/permission denied/,
			"$db: the patron-facing role is refused: $sql");
	}
}

# --- a dump of the upgraded database -----------------------------------------

command_ok([ 'pg_dump', @conn, '-Fc', '-f', "$tempdir/upgraded.dump", 'upgraded' ],
	'pg_dump of the upgraded database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my ($ok, $out, $err) = run_cmd(
	[ 'pg_restore', @conn, '--exit-on-error', '-d', 'restored', "$tempdir/upgraded.dump" ]);
ok($ok, 'pg_restore of the upgraded database');
is($err, '', 'pg_restore: no errors or warnings');
is($node->safe_psql('restored', 'SELECT * FROM patron_group.verify()'),
	'', 'restored from the upgraded database: verify() returns no rows');
same_catalog(extension_catalog($node, 'restored'),
	extension_catalog($node, 'upgraded'),
	'restored from the upgraded database: the same objects and privileges');
# what the grants made before the dump allow must still be allowed
my ($r, $o, $e) = $node->psql('restored',
	q{SELECT count(*) > 0 FROM patron_group.group_summary},
	connstr => $node->connstr('restored') . ' user=staff');
is("$o$e", 't', 'restored from the upgraded database: staff read group_summary');
($r, $o, $e) = $node->psql('restored',
	q{SET patron_group.application_user = 'desk'; SELECT patron_group.set_group_label(1, 'Alvarez-Ruiz family')},
	connstr => $node->connstr('restored') . ' user=staff');
is($e, '', 'restored from the upgraded database: staff label a group');
($r, $o, $e) = $node->psql('restored',
	q{SET ROLE opac; SELECT count(*) > 0 FROM patron_group.group_members(1)});
# it may run it (no "permission denied"), and as a patron-facing role it
# must first assert a patron
like("$o$e", qr/no patron is asserted in this transaction/,
	'restored from the upgraded database: the catalogue role keeps group_members()');

# --- the dump taken under 1.0, restored where 1.1 is installed ---------------

$node->safe_psql('postgres', 'CREATE DATABASE from10');
($ok, $out, $err) = run_cmd(
	[ 'pg_restore', @conn, '-d', 'from10', "$tempdir/v10.dump" ]);
is($err, '', 'the 1.0 dump restores where 1.1 is installed');
is( $node->safe_psql(
		'from10', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
	'1.1', 'the 1.0 dump restored: the extension is 1.1');
($r, $o, $e) = $node->psql('from10', 'SELECT * FROM patron_group.verify()');
is("$o$e", '', 'the 1.0 dump restored: verify() returns no rows');
is(after_workload($node, 'from10'), $work_fresh,
	'the 1.0 dump restored: new groups and events numbered after the restored ones');

$node->stop;

done_testing();
