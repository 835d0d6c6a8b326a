# Upgrade, as a library lives through it: a database made and used by a
# released version, with that version's own library (built from its commit,
# test/released_versions), then the current library installed and
# ALTER EXTENSION patron_group UPDATE run.
#
# For each released version: until the update, the current library refuses
# the old schema (a checkout fails with what to do, nothing is miscounted);
# the update keeps every row, finds nothing in verify(), makes the mapping
# views, and leaves the same objects, definitions and privileges (initial
# ones too, which pg_dump relies on) as a fresh install of the current
# version, which does the same work the same way.  A dump taken under the
# old version restores where the current one is installed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Releases;
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
	(my $file = $name) =~ s/\W+/_/g;
	append_to_file("$PostgreSQL::Test::Utils::log_path/${file}_1.txt", "$got\n");
	append_to_file("$PostgreSQL::Test::Utils::log_path/${file}_2.txt", "$want\n");
	return;
}

my $current = '1.3';
my $tempdir = PostgreSQL::Test::Utils::tempdir;

# --- the current version, fresh: what an upgrade must arrive at ------------

my $fresh = PostgreSQL::Test::Cluster->new('fresh');
$fresh->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$fresh->start;
$fresh->safe_psql('postgres', 'CREATE ROLE staff LOGIN');
is( $fresh->safe_psql(
		'postgres',
		q{SELECT default_version FROM pg_available_extensions WHERE name = 'patron_group'}),
	$current, "the default version is $current");
is( $fresh->safe_psql(
		'postgres', q{
SELECT string_agg(source || '>' || target || ' ' || path, ',' ORDER BY source, target)
  FROM pg_extension_update_paths('patron_group') WHERE path IS NOT NULL}),
	'1.0>1.1 1.0--1.1,1.0>1.2 1.0--1.1--1.2,1.0>1.3 1.0--1.1--1.2--1.3,1.1>1.2 1.1--1.2,1.1>1.3 1.1--1.2--1.3,1.2>1.3 1.2--1.3',
	'the update paths');
load_library($fresh, 'fresh');
$fresh->safe_psql('fresh', 'CREATE EXTENSION patron_group');
# a fresh install runs the current version's own script (built from
# sql/patron_group.sql), not 1.0's and the updates: the update to 1.1 drops
# a column of attachments, which a fresh install never had
is( $fresh->safe_psql(
		'fresh', q{SELECT count(*) FROM pg_attribute
		            WHERE attrelid = 'patron_group.attachments'::regclass AND attisdropped}),
	'0', "a fresh install runs the install script of $current");
attach_library($fresh, 'fresh');
run_scenario($fresh, 'fresh', changes_only => 1);
$fresh->safe_psql('fresh', q{SELECT patron_group.grant_staff('staff')});
$fresh->safe_psql('fresh',
	'GRANT USAGE ON SCHEMA ils TO staff; GRANT SELECT ON ALL TABLES IN SCHEMA ils TO staff');
my $cat_fresh = extension_catalog($fresh, 'fresh');
like($cat_fresh, qr/^view group_summary /m, 'the catalog listing sees the views');
like($cat_fresh, qr/^relation circulation_map kind=v /m, 'the catalog listing sees the mapping views');
like($cat_fresh, qr/^initial privileges /m, 'the catalog listing sees initial privileges');
my @same_data = (
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
	    FROM patron_group.health()});
my %data_fresh = map { $_ => $fresh->safe_psql('fresh', $_) } @same_data;
my $work_fresh = after_workload($fresh, 'fresh');
like($work_fresh, qr/^new group \d+$/m, 'fresh: workload ran');

# --- each released version, in use, then updated ----------------------------

foreach my $version ('1.0', '1.1', '1.2')
{
  SKIP:
	{
		my ($install, $why) = release_install($version);
		skip "version $version: $why", 1 unless $install;
		my $name = "from_$version" =~ s/\./_/gr;
		my $node = PostgreSQL::Test::Cluster->new($name, install_path => $install);
		$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
		$node->start;
		$node->safe_psql('postgres', 'CREATE ROLE staff LOGIN');

		load_library($node, 'upgraded');
		$node->safe_psql('upgraded', 'CREATE EXTENSION patron_group');
		is( $node->safe_psql(
				'upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
			$version, "$version: installed with its own library");
		attach_library($node, 'upgraded');
		run_scenario($node, 'upgraded', changes_only => 1);
		$node->safe_psql('upgraded', q{SELECT patron_group.grant_staff('staff')});
		$node->safe_psql('upgraded',
			'GRANT USAGE ON SCHEMA ils TO staff; GRANT SELECT ON ALL TABLES IN SCHEMA ils TO staff');
		is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
			'', "$version: verify() returns no rows");
		my $before = snapshot($node, 'upgraded', no_views => 1);
		my $index_files = $node->safe_psql('upgraded',
			q{SELECT string_agg(pg_relation_filenode(barcode_index::regclass)::text, ',')
			    FROM patron_group.attachments WHERE barcode_index IS NOT NULL});
		my @conn = ('-h', $node->host, '-p', $node->port);
		command_ok([ 'pg_dump', @conn, '-Fc', '-f', "$tempdir/$name.dump", 'upgraded' ],
			"$version: pg_dump");
		$node->stop;

		# the current library and scripts installed: the default installation
		$node->{_install_path} = undef;
		$node->start;
		my ($r, $o, $e) = $node->psql('upgraded',
			q{UPDATE ils.circulation SET due_at = due_at + interval '14 days'
			   WHERE id = (SELECT min(id) FROM ils.circulation WHERE checkin_at IS NULL)});
		like($e, qr/extension "patron_group" is at version \Q$version\E in this database, but its library is \Q$current\E/,
			"$version, current library: a renewal is refused until the update");
		like($e, qr/HINT:  Run ALTER EXTENSION patron_group UPDATE;/,
			"$version, current library: the refusal says what to do");

		($r, $o, $e) = $node->psql('upgraded', 'ALTER EXTENSION patron_group UPDATE');
		is($r, 0, "$version: ALTER EXTENSION patron_group UPDATE succeeds");
		is($e, '', "$version: the update gives no warnings");
		is( $node->safe_psql(
				'upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
			$current, "$version: updated to $current");

		my $after = snapshot($node, 'upgraded', no_views => 1);
		foreach my $item (sort keys %$before)
		{
			# new functions and their grants, and the protection 1.2 adds to the
			# transaction table, are compared with a fresh install below
			next if $item eq 'privileges' || $item eq 'policies' || $item eq 'row security';
			is($after->{$item}, $before->{$item}, "$version: the update kept $item");
		}
		is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
			'', "$version: verify() returns no rows after the update");
		is( $node->safe_psql(
				'upgraded', q{SELECT count(*) FROM patron_group.attachments
				               WHERE mapping IS NULL OR condition IS NOT NULL OR lost_condition IS NOT NULL}),
			'0', "$version: every attachment has its mapping view, and no condition as text");
		is( $node->safe_psql(
				'upgraded', q{SELECT count(*) FROM patron_group.attachment_status
				               WHERE cardinality(missing) = 0}),
			'5', "$version: attachment_status: five tables, nothing missing");
		if ($version eq '1.0')
		{
			# 1.1 changed the barcode normalizer: the update rebuilt the indexes
			isnt($node->safe_psql('upgraded',
					q{SELECT string_agg(pg_relation_filenode(barcode_index::regclass)::text, ',')
					    FROM patron_group.attachments WHERE barcode_index IS NOT NULL}),
				$index_files, '1.0: the update rebuilt the barcode indexes');
		}
		is( $node->safe_psql(
				'upgraded', q{
SET enable_seqscan = off;
SELECT patron_id FROM patron_group.find_patron(' 2900 0000 0000 60 ')}),
			'6', "$version: find_patron() through the barcode index");

		# staff get the new functions from grant_staff(), run again as the
		# README says, and lose the limits (a supervisor's right since 1.2)
		is( $node->safe_psql(
				'upgraded', q{SELECT has_function_privilege('staff',
				    'patron_group.set_limits(bigint,numeric,bigint,bigint,bigint)', 'EXECUTE')}),
			'f', "$version: the update took set_limits() from staff");
		$node->safe_psql('upgraded', q{SELECT patron_group.grant_staff('staff')});
		is( $node->safe_psql(
				'upgraded', q{SELECT count(*) >= 0 FROM patron_group.health()},
				connstr => $node->connstr('upgraded') . ' user=staff'),
			't', "$version: staff run health()");

		same_catalog(extension_catalog($node, 'upgraded'), $cat_fresh,
			"$version: the updated extension's objects are those of a fresh install");
		foreach my $q (@same_data)
		{
			my ($from) = $q =~ /FROM (patron_group\.\w+(?:\(\))?)/;
			is($node->safe_psql('upgraded', $q), $data_fresh{$q},
				"$version, updated, and fresh: $from identical");
		}
		is(after_workload($node, 'upgraded'), $work_fresh,
			"$version, updated: the same work gives the same groups, totals and history");
		is($node->safe_psql('upgraded', 'SELECT * FROM patron_group.verify()'),
			'', "$version, updated: verify() returns no rows after the work");

		# the patron-facing role got no staff rights on the way
		foreach my $sql (
			'SELECT patron_group.move_to_group(3, 6)',
			'SELECT count(*) FROM patron_group.accounts',
			'SELECT count(*) FROM patron_group.health()')
		{
			($r, $o, $e) = $node->psql('upgraded', "BEGIN; SET ROLE opac; $sql; ROLLBACK;");
			like($e, qr/permission denied/, "$version, updated: the patron-facing role is refused: $sql");
		}

		# a dump taken under the old version, restored where the current one is
		# installed (a library moved to a new server with the new version)
		$node->safe_psql('postgres', 'CREATE DATABASE restored');
		my ($ok, $out, $err) = run_cmd(
			[ 'pg_restore', @conn, '-d', 'restored', "$tempdir/$name.dump" ]);
		is($err, '', "the $version dump restores where $current is installed");
		is( $node->safe_psql(
				'restored', q{SELECT extversion FROM pg_extension WHERE extname = 'patron_group'}),
			$current, "the $version dump restored: the extension is $current");
		is( $node->safe_psql(
				'restored', q{SELECT count(*) FROM patron_group.attachments
				               WHERE mapping IS NULL OR condition IS NOT NULL}),
			'0', "the $version dump restored: its conditions became mapping views");
		($r, $o, $e) = $node->psql('restored', 'SELECT * FROM patron_group.verify()');
		is("$o$e", '', "the $version dump restored: verify() returns no rows");
		is(after_workload($node, 'restored'), $work_fresh,
			"the $version dump restored: new groups and events numbered after the restored ones");

		# a dump of the updated database restores with everything
		command_ok([ 'pg_dump', @conn, '-Fc', '-f', "$tempdir/${name}_updated.dump", 'upgraded' ],
			"$version, updated: pg_dump");
		$node->safe_psql('postgres', 'CREATE DATABASE again');
		($ok, $out, $err) = run_cmd([ 'pg_restore', @conn, '--exit-on-error', '-d', 'again',
				"$tempdir/${name}_updated.dump" ]);
		is($err, '', "$version, updated, dumped and restored: no errors or warnings");
		same_catalog(extension_catalog($node, 'again'), extension_catalog($node, 'upgraded'),
			"$version, updated, dumped and restored: the same objects and privileges");
		($r, $o, $e) = $node->psql('again', 'SELECT * FROM patron_group.verify()');
		is("$o$e", '', "$version, updated, dumped and restored: verify() returns no rows");
		$node->stop;
	}
}

$fresh->stop;

done_testing();
