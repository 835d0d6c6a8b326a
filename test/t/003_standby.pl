# A physical streaming standby: the reporting views, the read functions,
# verify() and health() run read-only on it and give the primary's figures,
# the catalogue can act for a patron there with a token issued on the
# primary, and every write fails with PostgreSQL's read-only error.  A
# change on the primary reaches the standby's figures once replayed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(
	allows_streaming => 1,
	extra => [ '--encoding=UTF8', '--locale=C' ]);
$primary->start;

$primary->safe_psql('postgres', 'CREATE ROLE staff LOGIN');
load_library($primary, 'library');
$primary->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($primary, 'library');
run_scenario($primary, 'library');
$primary->safe_psql(
	'library', q{
SELECT patron_group.grant_staff('staff');
GRANT USAGE ON SCHEMA ils TO staff;
GRANT SELECT ON ALL TABLES IN SCHEMA ils TO staff;
-- a consent that ends, for health() to report
SELECT patron_group.set_consent(3, 'bills', true, until => now() + interval '1 second');
SELECT pg_sleep(1.2);
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

# a change after the base backup, so the standby must replay it
$primary->safe_psql(
	'library', q{
SELECT patron_group.move_to_group(4, into_group_of => 6, reason => 'after the backup');
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
VALUES (4, 470, now() - interval '30 days', now() - interval '9 days');
});
my $token = $primary->safe_psql('library',
	q{SET ROLE signin; SELECT patron_group.issue_token(1, '1 hour')});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('library', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');

# --- the same figures on both ----------------------------------------------

my %reads = (
	'group_summary' => q{SELECT * FROM patron_group.group_summary ORDER BY group_id},
	'member_summary' => q{SELECT * FROM patron_group.member_summary ORDER BY patron_id},
	'membership_history' =>
	  q{SELECT * FROM patron_group.membership_history ORDER BY event_id},
	'attachment_status' =>
	  q{SELECT * FROM patron_group.attachment_status ORDER BY attached_table::text},
	'groups' => q{SELECT * FROM patron_group.groups ORDER BY group_id},
	'group_members(1)' => q{SELECT * FROM patron_group.group_members(1)},
	'group_members(4)' => q{SELECT * FROM patron_group.group_members(4)},
	'find_patron()' =>
	  q{SELECT * FROM patron_group.find_patron('２９０００ ０００００００２９')},
	'resolve_barcode()' =>
	  q{SELECT patron_group.resolve_barcode(' 2900 0000 0000 60 ')},
	'normalize_barcode()' =>
	  q{SELECT patron_group.normalize_barcode('２９０００ ０００００００２９')},
	'health()' => q{SELECT * FROM patron_group.health()},);

foreach my $name (sort keys %reads)
{
	my $on_primary = $primary->safe_psql('library', $reads{$name});
	isnt($on_primary, '', "primary: $name gives rows")
	  unless $name eq 'health()';
	my ($ret, $on_standby, $stderr) = $standby->psql('library', $reads{$name});
	is($stderr, '', "standby: $name runs");
	is($on_standby, $on_primary, "standby: $name as on the primary");
}

# what the figures say, so that the comparison is not of two empty answers
is( $standby->safe_psql(
		'library', q{SELECT member_count, items_out, items_overdue FROM patron_group.group_summary
		              WHERE group_id = (SELECT group_id FROM patron_group.accounts WHERE patron_id = 4)}),
	'3|1|1', 'standby: the move and the checkout made after the backup are counted');
like($standby->safe_psql('library', 'SELECT check_name FROM patron_group.health()'),
	qr/expired consent/, 'standby: health() reports the consent that ended');
is($standby->safe_psql('library', q{SELECT patron_group.normalize_barcode('２９０００ ０００００００２９')}),
	'29000000000029', 'standby: normalize_barcode()');

# the staff role reads the views on the standby too
is( $standby->safe_psql(
		'library', q{SELECT count(*) FROM patron_group.member_summary},
		connstr => $standby->connstr('library') . ' user=staff'),
	$primary->safe_psql('library', q{SELECT count(*) FROM ils.patron}),
	'standby: staff read member_summary');

# verify() recounts read-only; its answer is the primary's: nothing
my ($ret, $stdout, $stderr) =
  $standby->psql('library', 'SELECT * FROM patron_group.verify()');
is($stderr, '', 'standby: verify() runs read-only');
is($stdout, '', 'standby: verify() returns no rows');
is($primary->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 'primary: verify() returns no rows');

# a catalogue connected to the standby acts for Maria with a token issued on
# the primary and sees her loans and her consenting daughter's
($stdout, $stderr) = bound_session($standby, 'library', ['SET ROLE opac'], ['BEGIN'],
	['SIGN_IN', $token],
	[q{SELECT string_agg(DISTINCT patron::text, ',' ORDER BY patron::text)
	     FROM ils.circulation WHERE checkin_at IS NULL}],
	['COMMIT']);
is($stderr, '', 'standby: act_as_proof() with a token from the primary');
is($stdout, "1\n1,2", 'standby: the catalogue sees the lead\'s and the consenting member\'s loans');

# the service that signs patrons in may use the standby too: the secret
# exists, so issuing a token only reads it
($ret, $stdout, $stderr) = $standby->psql('library',
	q{SET ROLE signin; SELECT patron_group.issue_token(2)});
is($stderr, '', 'standby: issue_token() once the primary has a secret');
($stdout, $stderr) = bound_session($standby, 'library', ['SET ROLE opac'], ['BEGIN'],
	['SIGN_IN', $stdout], ['COMMIT']);
is("$stdout$stderr", '2', 'standby: a token issued on the standby is accepted');

# --- writes fail with the read-only error ------------------------------------

foreach my $write (
	q{SELECT patron_group.move_to_group(3, into_group_of => 6)},
	q{SELECT patron_group.remove_from_group(3)},
	q{SELECT patron_group.set_lead(2)},
	q{SELECT patron_group.set_group_label(1, 'x')},
	q{SELECT patron_group.set_consent(2, 'bills', true)},
	q{SELECT patron_group.clone_patron(1, '{"given_name": "Ana"}')},
	q{SELECT patron_group.rebuild()},
	q{SELECT patron_group.detach_all()},
	q{SELECT patron_group.rotate_token_secret()},
	q{SELECT patron_group.unprotect('ils.card')},
	q{INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
	  VALUES (1, 480, now(), now() + interval '21 days')},
	q{UPDATE ils.patron SET phone = '555-0000' WHERE id = 1},
	q{DROP EXTENSION patron_group})
{
	($ret, $stdout, $stderr) = $standby->psql('library', $write);
	isnt($ret, 0, "standby refuses: $write");
	like(
		$stderr,
		qr/ERROR:  cannot execute .* in a read-only transaction/,
		"standby: read-only error for: $write");
}

# --- the standby follows the primary -----------------------------------------

$primary->safe_psql(
	'library', q{
SELECT patron_group.set_group_label(1, 'Alvarez-Ruiz family');
UPDATE ils.circulation SET checkin_at = now() WHERE patron = 4 AND item = 470;
});
$primary->wait_for_catchup($standby);
foreach my $name ('group_summary', 'member_summary', 'membership_history', 'health()')
{
	is($standby->safe_psql('library', $reads{$name}),
		$primary->safe_psql('library', $reads{$name}),
		"after more changes on the primary: standby's $name as on the primary");
}
is( $standby->safe_psql(
		'library', q{SELECT label, items_out FROM patron_group.group_summary WHERE group_id = 1}),
	'Alvarez-Ruiz family|' . $primary->safe_psql('library',
		q{SELECT items_out FROM patron_group.groups WHERE group_id = 1}),
	'standby: the new label');

$standby->stop;
$primary->stop;

done_testing();
