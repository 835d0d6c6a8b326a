# Logical replication to a reporting database, the way README.md ("Logical
# replication to a reporting database") describes: the publisher publishes
# the library's tables and patron_group's accounts, groups, history and
# limits; the subscriber has the library's schema, the extension and a
# subscription, and once the initial copy is done it runs the same attach_*
# calls, for the mapping views, the barcode index and the triggers.  Those
# triggers stay in their default mode, so they do not fire for the rows the
# apply worker writes: the totals come from the publisher.
#
# Checked here: that patron_group.limits can be published as it is (the
# extension gives it REPLICA IDENTITY FULL, and a restore keeps it), what
# the subscriber shows before it is attached, that after attaching and
# after a load on the publisher the subscriber's views and tables give the
# publisher's figures and its verify() is empty (also while it is catching
# up), that no trigger of the extension fires in the apply worker, that
# group operations, consent, limits and detach are refused on the
# subscriber (25006) whatever its numbering, and what pg_dump of the
# publisher does not carry.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use List::Util qw(shuffle);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $publisher = PostgreSQL::Test::Cluster->new('publisher');
$publisher->init(
	allows_streaming => 'logical',
	extra => [ '--encoding=UTF8', '--locale=C' ]);
# trigger functions are C functions: 'all' counts their calls
$publisher->append_conf('postgresql.conf', 'track_functions = all');
$publisher->start;

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$subscriber->append_conf('postgresql.conf', 'track_functions = all');
$subscriber->start;

my $tempdir = PostgreSQL::Test::Utils::tempdir;

# --- the publisher: the library attached and in use ------------------------

load_library($publisher, 'library');
$publisher->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($publisher, 'library');
run_scenario($publisher, 'library', changes_only => 1);
is( $publisher->safe_psql(
		'library', q{
SELECT (SELECT count(*) FROM patron_group.groups) >= 2,
       (SELECT count(*) FROM patron_group.accounts WHERE is_lead) > 0,
       (SELECT count(*) FROM patron_group.accounts WHERE share_circulations) > 0,
       (SELECT count(*) FROM patron_group.history) > 10,
       (SELECT sum(items_overdue) FROM patron_group.group_summary) > 0
}),
	't|t|t|t|t',
	'publisher: groups, leads, consent, history and overdue loans');

my $published_tables = join(', ',
	(map { "ils.$_" } qw(library patron card item circulation transaction billing payment)),
	(map { "patron_group.$_" } qw(accounts groups history limits)));
$publisher->safe_psql('library', "CREATE PUBLICATION reporting FOR TABLE $published_tables");

# patron_group.limits has no primary key (its default row has group_id NULL):
# the extension gives it REPLICA IDENTITY FULL, so that once it is published
# PostgreSQL still accepts its UPDATEs and DELETEs, the DELETE that cascades
# from a removed group (the last member leaves) among them.
is($publisher->safe_psql('library',
		q{SELECT relreplident FROM pg_class WHERE oid = 'patron_group.limits'::regclass}),
	'f', 'publisher: patron_group.limits has REPLICA IDENTITY FULL');
my ($ret, $stdout, $stderr) = $publisher->psql(
	'library', q{
SELECT patron_group.set_limits(NULL, max_items_out => 40);
BEGIN;
SELECT patron_group.move_to_group(200, into_group_of => 201);
SELECT patron_group.remove_from_group(200);
SELECT patron_group.remove_from_group(201);
ROLLBACK;
});
is($stderr, '',
	'publisher, limits published: set_limits() and removing a group\'s last member work');

# --- the subscriber: the library's schema, the extension, a subscription ----

# The library's schema from the publisher, without what attaching and
# protect() put on its tables (triggers, the barcode index, row-level
# security and policies): attaching on the subscriber creates those that it
# needs, and refuses to attach a table that already has the triggers.
my @pub_conn = ('-h', $publisher->host, '-p', $publisher->port);
my @sub_conn = ('-h', $subscriber->host, '-p', $subscriber->port);
command_ok(
	[
		'pg_dump', @pub_conn, '--schema-only', '--schema=ils', '--no-owner',
		'--no-privileges', '-Fc', '-f', "$tempdir/ils.dump", 'library'
	],
	'pg_dump --schema-only of the library\'s schema');
# (the list filtered with the grep README.md gives)
($ret, $stdout, $stderr) = run_cmd(
	[
		'sh', '-c',
		"pg_restore -l '$tempdir/ils.dump' | grep -v -E ' (TRIGGER|POLICY|ROW SECURITY) |_pgbarcode ' > '$tempdir/ils.list'"
	]);
ok($ret, 'the restore list, filtered');
my $toc = slurp_file("$tempdir/ils.list");
like($toc, qr/ TABLE ils circulation /, 'the restore list has the library\'s tables');
unlike($toc, qr/patron_group_|_pgbarcode/, 'the restore list has no trigger, index or policy of the extension');

# Unfiltered, the dump brings the publisher's triggers, barcode index and
# policies (naming the publisher's roles).  Attaching keeps the triggers it
# finds (the same ones it would make) rather than make them twice.
$subscriber->safe_psql('postgres', 'CREATE DATABASE unfiltered');
$subscriber->safe_psql('unfiltered', 'CREATE EXTENSION patron_group');
run_cmd([ 'pg_restore', @sub_conn, '-d', 'unfiltered', "$tempdir/ils.dump" ]);
($ret, $stdout, $stderr) = $subscriber->psql('unfiltered', slurp_file(demo_file('attach.sql')),
	on_error_stop => 1);
is($stderr, '', 'schema restored with the publisher\'s triggers: attaching keeps them');
is($subscriber->safe_psql('unfiltered',
		q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ils.patron'::regclass AND tgname LIKE 'patron_group%'}),
	'4', 'schema restored with the publisher\'s triggers: none made twice');
$subscriber->safe_psql('postgres', 'DROP DATABASE unfiltered');

$subscriber->safe_psql('postgres', 'CREATE DATABASE library');
($ret, $stdout, $stderr) = run_cmd(
	[
		'pg_restore', @sub_conn, '--exit-on-error', '-L', "$tempdir/ils.list",
		'-d', 'library', "$tempdir/ils.dump"
	]);
ok($ret, 'subscriber: pg_restore of the library\'s schema');
is($stderr, '', 'subscriber: pg_restore without errors');
$subscriber->safe_psql('library', 'CREATE EXTENSION patron_group');

my $pub_connstr = 'host=' . $publisher->host . ' port=' . $publisher->port . ' dbname=library';
$subscriber->safe_psql('library',
	"CREATE SUBSCRIPTION reporting CONNECTION '$pub_connstr' PUBLICATION reporting");
# (tables are copied in any order, accounts possibly before the groups they
# name: the table sync workers, in replica mode, check no foreign key)
$subscriber->wait_for_subscription_sync($publisher, 'reporting', 'library');
# ('s', sync done, becomes 'r', ready, when the apply worker takes the table over)
$subscriber->poll_query_until('library',
	q{SELECT bool_and(srsubstate = 'r') FROM pg_subscription_rel})
  or die 'timed out waiting for the tables to be ready';
is( $subscriber->safe_psql(
		'library', q{SELECT string_agg(srrelid::regclass::text || ' ' || srsubstate::text, ', '
		                             ORDER BY srrelid::regclass::text)
		              FROM pg_subscription_rel}),
	join(', ', map { "$_ r" } sort split /, /, $published_tables),
	'subscriber: every published table copied and ready');

# --- before attaching: what a DBA sees who forgets it ----------------------

# The views read the replicated accounts, groups and history, but nothing
# is attached to read barcodes, names and loans from: those are NULL in
# member_summary and membership_history, and group_summary's items_overdue
# is NULL too (not known here), whatever the publisher counts.  The
# functions that need the mapping refuse.
is( $subscriber->safe_psql(
		'library', q{
SELECT count(*), count(barcode), count(display_name), count(items_overdue),
       sum(items_out) = (SELECT sum(items_out) FROM patron_group.accounts)
  FROM patron_group.member_summary}),
	$publisher->safe_psql('library', 'SELECT count(*) FROM ils.patron') . '|0|0|0|t',
	'not attached: member_summary has the totals but no barcode, name or overdue count');
is($subscriber->safe_psql('library',
		'SELECT count(*), count(barcode), count(display_name) FROM patron_group.membership_history'),
	$publisher->safe_psql('library', 'SELECT count(*) FROM patron_group.history') . '|0|0',
	'not attached: membership_history has no barcode or name');
is($subscriber->safe_psql('library', 'SELECT count(*), count(items_overdue) FROM patron_group.group_summary'),
	$publisher->safe_psql('library', 'SELECT count(*) FROM patron_group.groups') . '|0',
	'not attached: group_summary has the groups but no overdue count');
isnt($publisher->safe_psql('library', 'SELECT sum(items_overdue) FROM patron_group.group_summary'),
	'0', '(while the publisher counts some)');
foreach my $call (
	'SELECT * FROM patron_group.verify()',
	'SELECT * FROM patron_group.group_members(1)',
	q{SELECT * FROM patron_group.find_patron('29000000000011')})
{
	($ret, $stdout, $stderr) = $subscriber->psql('library', $call);
	like($stderr, qr/ERROR:  no patron table is attached/, "not attached: $call fails");
}
is($subscriber->safe_psql('library', 'SELECT check_name FROM patron_group.health()'),
	'no patron table', 'not attached: health() says no patron table is attached');

# --- attach on the subscriber ----------------------------------------------

# In one transaction, so that no reader sees the totals half recounted (each
# attach of loans or money recounts every patron from what is attached so
# far); the apply worker waits for it at the attached tables' locks.
$subscriber->safe_psql('library', "BEGIN;\n" . slurp_file(demo_file('attach.sql')) . "\nCOMMIT;");
$publisher->wait_for_catchup('reporting');

# What must be identical: the library's rows, patron_group's replicated
# tables, the reporting views (items_overdue counted when read, on each side,
# from the replicated loans), the triggers on the library's tables (with
# their mode: 'O', the default) and the mapping views.
my %compare = %{ snapshot_queries() };
delete @compare{qw(attachments patron_facing_roles policies), 'row security', 'privileges'};
%compare = (%compare, %{ PatronGroupLibrary::view_queries() });
delete $compare{attachment_status};
$compare{'limits'} = q{SELECT string_agg(l::text, E'\n' ORDER BY l.group_id NULLS FIRST)
                         FROM patron_group.limits l};
$compare{'mapping views'} = q{
  SELECT string_agg(c.relname || ' ' || pg_get_viewdef(c.oid), E'\n' ORDER BY c.relname)
    FROM pg_class c
   WHERE c.relnamespace = 'patron_group'::regnamespace AND c.relname LIKE '%\_map'};
$compare{'group_members(1)'} = q{SELECT * FROM patron_group.group_members(1)};
$compare{'health()'} = q{SELECT * FROM patron_group.health()};
$compare{'find_patron()'} = q{SELECT * FROM patron_group.find_patron('２９０００ ０００００００２９')};

sub compare_all
{
	my ($when) = @_;
	foreach my $name (sort keys %compare)
	{
		my $want = $publisher->safe_psql('library', $compare{$name});
		isnt($want, '', "$when: publisher has $name") unless $name =~ /^(limits|health\(\))$/;
		is($subscriber->safe_psql('library', $compare{$name}),
			$want, "$when: subscriber's $name as the publisher's");
	}
	is($subscriber->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
		'', "$when: subscriber's verify() returns no rows");
	is($publisher->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
		'', "$when: publisher's verify() returns no rows");
	return;
}

compare_all('after attaching');
like($subscriber->safe_psql('library', 'SELECT sum(items_overdue) FROM patron_group.group_summary'),
	qr/^[1-9]/, 'after attaching: the subscriber counts the overdue loans');
is($subscriber->safe_psql('library', q{SELECT count(*) FROM pg_trigger
                                        WHERE tgname LIKE 'patron_group%' AND tgenabled <> 'O'}),
	'0', 'subscriber: the attached tables\' triggers are in their default mode');
is($subscriber->safe_psql('library', 'SELECT count(*) FROM patron_group.patron_facing_roles'),
	'0', 'subscriber: patron-facing roles are the publisher\'s configuration, not replicated');

# --- a load on the publisher, while the subscriber is read -----------------

$_->safe_psql('library', 'SELECT pg_stat_reset()') foreach ($publisher, $subscriber);

my $after = after_workload($publisher, 'library');
like($after, qr/^new group \d+$/m, 'publisher: after_workload ran');

# A patron with open loans and bills, moved into the Okafor group, then
# merged into Jürgen (patron 5, Alvarez group) and deleted.  The loans and
# money of the load go to patrons 8 to 287, so that none names the merged
# patron once deleted.
my $merged = $publisher->safe_psql(
	'library', q{
SELECT min(t.patron) FROM ils.transaction t JOIN ils.billing b ON b.xact = t.id
 WHERE t.patron BETWEEN 288 AND 307
   AND EXISTS (SELECT FROM ils.circulation c WHERE c.patron = t.patron AND c.checkin_at IS NULL)});
like($merged, qr/^\d+$/, "merge: patron $merged has open loans and bills");

srand(42);
my @load;
foreach my $i (1 .. 200)
{
	my ($p, $item, $d) = (8 + ($i * 37) % 280, 1 + ($i * 13) % 500, $i % 40);
	push @load,
	  "INSERT INTO ils.circulation (patron, item, checkout_at, due_at) VALUES ($p, $item, "
	  . "now() - interval '$d days', now() - interval '$d days' + interval '21 days');";
}
foreach my $i (1 .. 150)
{
	my $p = 8 + ($i * 53) % 280;
	push @load,
	  "UPDATE ils.circulation SET checkin_at = now() WHERE id = "
	  . "(SELECT min(id) FROM ils.circulation WHERE patron = $p AND checkin_at IS NULL);";
}
foreach my $i (1 .. 10)
{
	my $p = 8 + ($i * 29) % 280;
	push @load,
	  "UPDATE ils.circulation SET stop_fines = 'LOST' WHERE id = "
	  . "(SELECT max(id) FROM ils.circulation WHERE patron = $p AND checkin_at IS NULL);";
}
foreach my $i (1 .. 120)
{
	my ($p, $amount) = (8 + ($i * 41) % 280, sprintf('%.2f', 0.25 * (1 + $i % 12)));
	push @load,
	  "WITH x AS (INSERT INTO ils.transaction (patron, kind, created_at) VALUES ($p, 'grocery', now()) "
	  . "RETURNING id) INSERT INTO ils.billing (xact, amount, billed_at, note) "
	  . "SELECT id, $amount, now(), 'Printing' FROM x;";
}
foreach my $i (1 .. 100)
{
	my $p = 8 + ($i * 41) % 280;
	push @load,
	  "INSERT INTO ils.payment (xact, amount, paid_at, kind) SELECT max(id), 0.25, now(), 'card' "
	  . "FROM ils.transaction WHERE patron = $p HAVING max(id) IS NOT NULL;";
}
foreach my $i (1 .. 5)
{
	my $p = 8 + ($i * 41) % 280;
	push @load,
	  "UPDATE ils.billing SET voided = true WHERE id = (SELECT max(b.id) FROM ils.billing b "
	  . "JOIN ils.transaction t ON t.id = b.xact WHERE t.patron = $p);";
}
@load = shuffle(@load);

# the group operations and the merge, spread through the loans and money
my @groups_and_merge = (
	q{SELECT patron_group.move_to_group('{40,41,42}'::bigint[], into_group_of => 43, reason => 'new household');},
	q{SELECT patron_group.set_lead(43, reason => 'parent');},
	q{SELECT patron_group.set_consent(41, 'bills', true, reason => 'form signed');},
	q{SELECT patron_group.set_group_label((SELECT group_id FROM patron_group.accounts WHERE patron_id = 43), 'Load household');},
	q{SELECT patron_group.set_limits((SELECT group_id FROM patron_group.accounts WHERE patron_id = 43), max_balance_owed => 5);},
	q{SELECT patron_group.set_limits(NULL, max_items_out => 35, max_items_overdue => 4);},
	q{SELECT patron_group.move_to_group(2, into_group_of => 6, reason => 'moved to her aunt');},
	q{SELECT patron_group.clone_patron(1, '{"given_name": "Ines", "barcode": "29000000000995"}', reason => 'registered at the desk');},
	"SELECT patron_group.move_to_group($merged, into_group_of => 6, reason => 'lodger');",
	# a patron merge in plain SQL, locking what it reassigns first (see Concurrency)
	"BEGIN; SELECT FROM ils.circulation WHERE patron = $merged FOR UPDATE;"
	  . " SELECT FROM ils.transaction WHERE patron = $merged FOR UPDATE;"
	  . " UPDATE ils.circulation SET patron = 5 WHERE patron = $merged;"
	  . " UPDATE ils.transaction SET patron = 5 WHERE patron = $merged;"
	  . " DELETE FROM ils.patron WHERE id = $merged; COMMIT;",
	# the group and its limits go when its last member leaves
	q{SELECT patron_group.remove_from_group(p, reason => 'moved away') FROM unnest('{40,41,42,43}'::bigint[]) p;},
);
my $step = int(@load / (@groups_and_merge + 1));
for my $k (reverse 0 .. $#groups_and_merge)
{
	splice(@load, ($k + 1) * $step, 0, $groups_and_merge[$k]);
}
open(my $fh, '>', "$tempdir/load.sql") or die "load.sql: $!";
print $fh "SET patron_group.application_user = 'desk-load';\n", join("\n", @load), "\n";
close $fh;
note(scalar(@load) . ' transactions in the load');

my ($load_out, $load_err) = ('', '');
my $load = IPC::Run::start(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $publisher->connstr('library'),
		'-f', "$tempdir/load.sql"
	],
	'>', \$load_out, '2>', \$load_err);

# verify() on the subscriber while it follows: every publisher transaction is
# applied as a whole, so each answer is of a consistent state
my ($polls, $dirty, %states) = (0, 0);
while (1)
{
	my ($found, $loans) = split /\|/,
	  $subscriber->safe_psql('library',
		'SELECT (SELECT count(*) FROM patron_group.verify()), (SELECT count(*) FROM ils.circulation)');
	$polls++;
	$dirty++ if $found ne '0';
	$states{$loans} = 1;
	last unless $load->pumpable;
	$load->pump_nb;
}
$load->finish;
is($load_err, '', 'publisher: the load ran without errors');
$publisher->wait_for_catchup('reporting');
note("subscriber polled $polls times during the load, in " . scalar(keys %states)
	  . ' different states');
cmp_ok(scalar(keys %states), '>', 1, 'subscriber: read while the load was being applied');
is($dirty, 0, 'subscriber: verify() returned no rows at every poll during the load');

# the load reached everything it was meant to
is( $publisher->safe_psql(
		'library', qq{
SELECT (SELECT count(*) FROM ils.patron WHERE id = $merged),
       (SELECT count(*) FROM patron_group.accounts WHERE patron_id IN (40, 41, 42, 43) AND group_id IS NOT NULL),
       (SELECT count(*) FROM patron_group.limits),
       (SELECT count(*) FROM patron_group.history WHERE app_user = 'desk-load' AND action = 'delete'),
       (SELECT group_id FROM patron_group.accounts WHERE patron_id = 2)
          = (SELECT group_id FROM patron_group.accounts WHERE patron_id = 6),
       (SELECT count(*) FROM ils.circulation WHERE stop_fines = 'LOST' AND checkin_at IS NULL) > 0,
       (SELECT count(*) FROM ils.billing WHERE voided AND billed_at > now() - interval '1 hour') > 0
}),
	'0|0|1|1|t|t|t',
	'publisher: merged patron gone, the load\'s group and its limits gone, Sofia moved, lost and voided rows');

# --- no trigger of the extension fired in the apply worker ------------------

# The apply worker runs with session_replication_role = replica: triggers in
# their default mode (ENABLE, 'O') do not fire, neither the totals triggers on
# the library's tables nor accounts_bookkeeping on patron_group.accounts.
# Its statistics are flushed with its table counts: wait for those, nudging
# it with one more transaction after a second if need be.  (Checked before
# the comparisons, whose find_patron() calls normalize_barcode() too.)
my $want_loans = $publisher->safe_psql('library',
	q{SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'ils.circulation'::regclass});
my $flushed;
foreach my $try (1 .. 30)
{
	$flushed = $subscriber->safe_psql('library',
		q{SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'ils.circulation'::regclass});
	last if $flushed eq $want_loans;
	sleep 1;
	$publisher->safe_psql('library', 'UPDATE ils.library SET name = name WHERE id = 1');
}
is($flushed, $want_loans, "subscriber: the apply worker's statistics are in ($flushed loans inserted)");

my $trigger_functions = q{('patrons_trigger', 'accounts_trigger', 'totals_trigger', 'via_trigger',
                           'limits_trigger', 'history_guard', 'sequence_catch_up', 'attachments_restore')};
my $fired = qq{SELECT coalesce(string_agg(funcname || ' ' || calls, ', ' ORDER BY funcname), 'none')
                 FROM pg_stat_user_functions
                WHERE schemaname = 'patron_group' AND funcname IN $trigger_functions AND calls > 0};
my $on_publisher = $publisher->safe_psql('library', $fired);
like($on_publisher, qr/accounts_trigger \d+.*totals_trigger \d+.*via_trigger \d+/,
	"publisher: the extension's triggers fired ($on_publisher)");
is($subscriber->safe_psql('library', $fired),
	'none', 'subscriber: no trigger function of the extension was called');
# ...while the apply worker did call the extension's C code: the barcode
# index on ils.card evaluates normalize_barcode() for every card it inserts
like( $subscriber->safe_psql(
		'library', q{
SELECT (SELECT calls FROM pg_stat_user_functions
         WHERE schemaname = 'patron_group' AND funcname = 'normalize_barcode')
       || ' ' || (SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'ils.card'::regclass)}),
	qr/^([1-9]\d*) \1$/,
	'subscriber: the apply worker called normalize_barcode() once per card it inserted');
# nothing was numbered on the subscriber: no group and no history event was
# made there (the sequences are not replicated)
is( $subscriber->safe_psql(
		'library', q{
SELECT (SELECT last_value || ' ' || is_called FROM patron_group.groups_group_id_seq),
       (SELECT last_value || ' ' || is_called FROM patron_group.history_event_id_seq)}),
	'1 false|1 false',
	'subscriber: the groups and history sequences were never used');
is($subscriber->safe_psql('library',
		q{SELECT apply_error_count || ' ' || sync_error_count FROM pg_stat_subscription_stats}),
	'0 0', 'subscriber: no apply or sync errors');

compare_all('after the load');

# --- reading on the subscriber; group operations there ----------------------

# A reporting role with read access only (grant_staff() would give the group
# operations too).
$subscriber->safe_psql(
	'library', q{
CREATE ROLE reporter LOGIN;
GRANT USAGE ON SCHEMA ils, patron_group TO reporter;
GRANT SELECT ON ALL TABLES IN SCHEMA ils TO reporter;
GRANT SELECT ON patron_group.attachments, patron_group.accounts, patron_group.groups,
      patron_group.history, patron_group.limits, patron_group.member_summary,
      patron_group.group_summary, patron_group.membership_history,
      patron_group.attachment_status TO reporter;
GRANT EXECUTE ON FUNCTION patron_group.patron_details(bigint), patron_group.group_members(bigint),
      patron_group.find_patron(text) TO reporter;
});
my $as_reporter = $subscriber->connstr('library') . ' user=reporter';
foreach my $name ('member_summary', 'group_summary', 'membership_history', 'group_members(1)')
{
	is($subscriber->safe_psql('library', $compare{$name}, connstr => $as_reporter),
		$publisher->safe_psql('library', $compare{$name}),
		"subscriber: the reporting role reads $name as on the publisher");
}
($ret, $stdout, $stderr) = $subscriber->psql('library',
	'SELECT patron_group.move_to_group(200, into_group_of => 1)', connstr => $as_reporter);
like($stderr, qr/permission denied for function move_to_group/,
	'subscriber: the reporting role has no group operations');

# Group operations by a superuser on the subscriber are refused: they are
# made on the publisher (a change here would take numbers the publisher has
# used, diverge, and stop the replication at the publisher's next event of
# that number).  Refused even once the subscriber's numbering is past the
# publisher's.
my $next_event = $publisher->safe_psql('library', 'SELECT max(event_id) + 1 FROM patron_group.history');
$subscriber->safe_psql('library',
	"SELECT setval('patron_group.history_event_id_seq', $next_event + 1000), "
	  . "setval('patron_group.groups_group_id_seq', 100000)");
my $before = $subscriber->safe_psql('library', $compare{membership_history});
foreach my $op (
	'SELECT patron_group.move_to_group(200, into_group_of => 201)',
	'SELECT patron_group.remove_from_group(2)',
	'SELECT patron_group.set_lead(2)',
	q{SELECT patron_group.set_group_label(1, 'x')},
	q{SELECT patron_group.set_consent(2, 'bills', false)},
	q{SELECT patron_group.clone_patron(1, '{"id": 990001, "given_name": "Ana"}')},
	'SELECT patron_group.set_limits(NULL, max_items_out => 1)',
	'SELECT patron_group.clear_limits(NULL)',
	q{SELECT patron_group.detach('ils.payment')},
	'SELECT patron_group.detach_all()',
	'DELETE FROM ils.patron WHERE id = 200')
{
	($ret, $stdout, $stderr) = $subscriber->psql('library', $op);
	like($stderr,
		qr/ERROR:  patron_group's tables are replicated into this database: it is read-only for patron_group/,
		"subscriber refuses: $op");
}
is($subscriber->safe_psql('library', $compare{membership_history}), $before,
	'subscriber: the refused operations changed nothing');
is($subscriber->safe_psql('library', 'SELECT count(*) FROM patron_group.attachments'),
	$publisher->safe_psql('library', 'SELECT count(*) FROM patron_group.attachments'),
	'subscriber: still attached');

# and replication goes on
$publisher->safe_psql(
	'library', q{
SELECT patron_group.set_group_label(1, 'Alvarez-Ruiz family');
UPDATE ils.circulation SET checkin_at = now()
 WHERE id = (SELECT min(id) FROM ils.circulation WHERE patron = 5 AND checkin_at IS NULL);
});
$publisher->wait_for_catchup('reporting');
foreach my $name ('group_summary', 'member_summary', 'membership_history')
{
	is($subscriber->safe_psql('library', $compare{$name}),
		$publisher->safe_psql('library', $compare{$name}),
		"after the refused operations: subscriber's $name as the publisher's");
}
is($subscriber->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', "after the refused operations: subscriber's verify() returns no rows");

# --- what a dump of the publisher does not carry ----------------------------

# Before PostgreSQL 18, pg_dump does not write the publication's
# patron_group tables (they belong to the extension): after a restore of the
# publisher they are to be added again.  pg_dump 18 writes them, so its
# restore brings them back.  The replica identity of limits comes with
# CREATE EXTENSION.
command_ok([ 'pg_dump', @pub_conn, '--schema-only', '-f', "$tempdir/publisher.sql", 'library' ],
	'pg_dump --schema-only of the publisher');
my $dump = slurp_file("$tempdir/publisher.sql");
like($dump, qr/ALTER PUBLICATION reporting ADD TABLE ONLY ils\.circulation;/,
	'the dump has the publication of the library\'s tables');
if ($publisher->pg_version >= 18)
{
	foreach my $table (qw(accounts groups history limits))
	{
		like($dump, qr/ALTER PUBLICATION reporting ADD TABLE ONLY patron_group\.$table;/,
			"PostgreSQL 18 on: the dump has the publication of patron_group.$table");
	}
}
else
{
	unlike($dump, qr/ALTER PUBLICATION reporting ADD TABLE ONLY patron_group\./,
		'before PostgreSQL 18: the dump does not have the publication of patron_group\'s tables');
}
like($dump, qr/CREATE EXTENSION IF NOT EXISTS patron_group/,
	'the dump makes the extension, and so limits\' replica identity, anew');

$subscriber->stop;
$publisher->stop;

done_testing();
