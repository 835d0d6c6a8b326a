# Soak: several clients for a fixed time doing a random mix of checkouts,
# checkins, bills, payments, voids, patron merges, moves, removes, clones,
# lead and consent changes and rebuild() of random patrons (test/soak/),
# first in READ COMMITTED, then in SERIALIZABLE.  Afterwards verify()
# returns no rows and the history accounts for every membership, lead and
# consent change.  rebuild() during the load must never find anything to
# repair.
#
# Every transaction is one statement, except a merge (billable transactions,
# then loans), which first locks what it will reassign, as the README asks
# of a merge in several statements (see RELIABILITY.md for what happens
# without), so the library system's own statements cannot deadlock with
# each other.  In READ COMMITTED there must be no serialization failure and
# no deadlock.
#
# SOAK_SECONDS (default 30) sets the READ COMMITTED phase; the SERIALIZABLE
# phase runs a third of it.  SOAK_CLIENTS (6) and SOAK_PATRONS (200) set
# the concurrency and the size of the library.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../soak";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Soak;

my $seconds = $ENV{SOAK_SECONDS} || 30;
my $clients = $ENV{SOAK_CLIENTS} || 6;
my $patrons = $ENV{SOAK_PATRONS} || 200;

my $node = soak_node('soak', $patrons);
is($node->safe_psql('postgres', 'SELECT count(*) FROM patron_group.verify()'),
	'0', 'verify() is empty before the load');

# Run one phase; returns the parsed report.
sub phase
{
	my ($name, $isolation, $secs) = @_;
	my ($stdout, $stderr);
	my $log_start = -s $node->logfile;
	local $ENV{PGOPTIONS} = "-c default_transaction_isolation=$isolation";
	my $ok = IPC::Run::run(soak_command($node, $clients, $secs, $patrons),
		'>', \$stdout, '2>', \$stderr);
	my $report = soak_report($stdout, $stderr);
	my $log = slurp_file($node->logfile, $log_start);

	ok($ok, "$name: pgbench ran to the end, no client aborted")
	  or diag(substr($stderr, 0, 3000));
	unlike($stderr, qr/data_corrupted|totals had drifted/,
		"$name: rebuild() during the load repaired nothing");
	foreach my $op (@{ $report->{order} })
	{
		my $r = $report->{ops}{$op};
		cmp_ok($r->{transactions}, '>', 0, "$name: $op ran");
		is($r->{failed}, 0, "$name: no $op failed for good");
	}
	is(scalar @{ $report->{order} }, scalar @Soak::SCRIPTS, "$name: every operation reported");

	my @deadlocks = soak_deadlocks($log);
	diag(sprintf("%s: %d clients, %d s, %d patrons: %d transactions, %.0f per second\n%s",
			$name, $clients, $secs, $patrons, $report->{total} // 0,
			($report->{total} // 0) / $secs, soak_table($report)));
	diag("$name: deadlocks in the server log: " . scalar(@deadlocks)
		  . ", of which between a merge and another operation: "
		  . scalar(grep { /SET patron = / } @deadlocks));
	return ($report, \@deadlocks);
}

my ($rc, $rc_deadlocks) = phase('read committed', 'read\ committed', $seconds);
my $serialization = 0;
$serialization += $_->{serialization} foreach values %{ $rc->{ops} };
is($serialization, 0, 'read committed: no serialization failure');
is(scalar @$rc_deadlocks, 0,
	'read committed: no deadlock (merges lock what they reassign first, as the README asks)')
  or diag(join("\n----\n", @$rc_deadlocks));

my $checks = q{
SELECT 'verify', count(*) FROM patron_group.verify()
UNION ALL SELECT 'history', count(*) FROM soak.history_gaps()
UNION ALL SELECT 'accounts without patron', count(*) FROM patron_group.accounts a
    WHERE NOT EXISTS (SELECT FROM soak.patron p WHERE p.id = a.patron_id)
UNION ALL SELECT 'patrons without account', count(*) FROM soak.patron p
    WHERE NOT EXISTS (SELECT FROM patron_group.accounts a WHERE a.patron_id = p.id)
};
my $clean = "verify|0\nhistory|0\naccounts without patron|0\npatrons without account|0";
is($node->safe_psql('postgres', $checks), $clean,
	'read committed: verify() empty, history chains to every account, one account per patron');

my ($ser) = phase('serializable', 'serializable', int($seconds / 3) || 1);
is($node->safe_psql('postgres', $checks), $clean,
	'serializable: verify() empty, history chains to every account, one account per patron');

diag($node->safe_psql('postgres', q{
SELECT format('history: %s rows; %s groups, %s patrons in groups, %s patrons', 
    (SELECT count(*) FROM patron_group.history), (SELECT count(*) FROM patron_group.groups),
    (SELECT count(*) FROM patron_group.accounts WHERE group_id IS NOT NULL),
    (SELECT count(*) FROM patron_group.accounts))
}));

$node->stop;
done_testing();
