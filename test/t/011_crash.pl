# Crash: the soak's load (test/soak/) runs, the server is stopped with an
# immediate shutdown (no checkpoint, as after a power cut) in the middle of
# it, restarted, and then verify() returns no rows, the history chains to
# every account, and amcheck finds the extension's tables and indexes sound.
# Then the load runs again on the recovered server, and the same holds.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../soak";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use Soak;

my $patrons = 200;
my $node = soak_node('crash', $patrons);
$node->safe_psql('postgres', 'CREATE EXTENSION amcheck');

my $checks = q{
SELECT 'verify', count(*) FROM patron_group.verify()
UNION ALL SELECT 'history', count(*) FROM soak.history_gaps()
UNION ALL SELECT 'patrons without account', count(*) FROM soak.patron p
    WHERE NOT EXISTS (SELECT FROM patron_group.accounts a WHERE a.patron_id = p.id)
};
my $clean = "verify|0\nhistory|0\npatrons without account|0";

# amcheck: every btree index of the extension and of the library matches
# its table (an error if not); returns how many were checked
my $amcheck = q{
SELECT count(bt_index_check(c.oid, true))
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
 WHERE c.relnamespace IN ('patron_group'::regnamespace, 'soak'::regnamespace)
};

foreach my $round (1, 2)
{
	my ($stdout, $stderr);
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM soak.circulation');
	my $h = IPC::Run::start(soak_command($node, 6, 60, $patrons),
		'>', \$stdout, '2>', \$stderr);

	# wait until the load is well under way, then pull the plug
	my $loans = $before;
	foreach (1 .. 200)
	{
		usleep(100_000);
		$loans = $node->safe_psql('postgres', 'SELECT count(*) FROM soak.circulation');
		last if $loans >= $before + 500;
	}
	cmp_ok($loans, '>=', $before + 500, "round $round: the load is running");
	$node->stop('immediate');
	$h->finish;
	like($stderr, qr/terminat|connection|server closed|aborted/i,
		"round $round: the clients lost their connections");

	$node->start;
	my $recovered = $node->safe_psql('postgres', 'SELECT count(*) FROM soak.circulation');
	cmp_ok($recovered, '>', $before, "round $round: committed loans survived the crash");
	is($node->safe_psql('postgres', $checks), $clean,
		"round $round: after recovery verify() is empty and the history chains");
	cmp_ok($node->safe_psql('postgres', $amcheck), '>=', 10,
		"round $round: amcheck finds every btree index sound");
	note("round $round: loans before the load $before, seen before the crash $loans, after recovery $recovered");
}

$node->stop;
done_testing();
