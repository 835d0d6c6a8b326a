# Soak: the library of schema.sql under pgbench, one script per kind of
# operation, and what its output says.  Used by test/t/010_soak.pl and
# test/t/011_crash.pl.

package Soak;

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(soak_node soak_setup soak_command soak_report soak_deadlocks soak_table);

# this module's folder, with the SQL scripts (PGXS sets TESTDIR only before 17)
my $dir = dirname(abs_path(__FILE__));

# Operations and their weights (per cent of the transactions started).
our @SCRIPTS = (
	[ checkout => 20 ], [ checkin => 20 ], [ bill => 10 ], [ payment => 10 ],
	[ void => 5 ], [ merge => 5 ], [ move => 8 ], [ remove => 4 ],
	[ clone => 3 ], [ lead => 5 ], [ consent => 5 ], [ rebuild => 5 ]);

# A started node with the library loaded and attached.
sub soak_node
{
	my ($name, $patrons) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$node->append_conf('postgresql.conf', qq{
max_connections = 40
deadlock_timeout = 200ms
});
	$node->start;
	soak_setup($node, $patrons);
	return $node;
}

# Load the library and attach it.
sub soak_setup
{
	my ($node, $patrons) = @_;
	$node->safe_psql('postgres', "\\set patrons $patrons\n\\i $dir/schema.sql");
	return;
}

# The pgbench command line: clients, seconds, extra options.
sub soak_command
{
	my ($node, $clients, $seconds, $patrons) = @_;
	return [
		'pgbench', '-n',
		'-h', $node->host, '-p', $node->port,
		'-c', $clients, '-j', 2, '-T', $seconds,
		'--max-tries=1000', '--failures-detailed', '--verbose-errors',
		'-D', "patrons=$patrons",
		(map { ('-f', "$dir/$_->[0].sql\@$_->[1]") } @SCRIPTS),
		'postgres'
	];
}

# Per operation: transactions, failed, retried, retries (pgbench's summary),
# and the deadlocks and serialization failures its errors name.
sub soak_report
{
	my ($stdout, $stderr) = @_;
	my %ops;
	my @order;
	my $total;

	$total = $1 if $stdout =~ /number of transactions actually processed: (\d+)/;
	while ($stdout =~ /^SQL script \d+: \S*?(\w+)\.sql\n(.*?)(?=^SQL script|\z)/msg)
	{
		my ($name, $body) = ($1, $2);
		my %r = (deadlocks => 0, serialization => 0);
		$r{transactions} = $body =~ /- (\d+) transactions/ ? $1 : 0;
		$r{failed} = $body =~ /failed transactions: (\d+)/ ? $1 : 0;
		$r{retried} = $body =~ /transactions retried: (\d+)/ ? $1 : 0;
		$r{retries} = $body =~ /total number of retries: (\d+)/ ? $1 : 0;
		push @order, $name;
		$ops{$name} = \%r;
	}
	while ($stderr =~ /got an error in command \d+ \(SQL\) of script (\d+); ERROR:  (deadlock detected|could not serialize)/g)
	{
		my $name = $order[$1];
		$ops{$name}{ $2 eq 'deadlock detected' ? 'deadlocks' : 'serialization' }++
		  if defined $name;
	}
	return { total => $total, order => \@order, ops => \%ops };
}

# The statements of the transactions each deadlock in the server log set
# against each other, one string per deadlock.
sub soak_deadlocks
{
	my ($log) = @_;
	my @found;
	while ($log =~ /ERROR:  deadlock detected\n.*?DETAIL:  (.*?)\n[^\n]*HINT:/msg)
	{
		push @found, $1;
	}
	return @found;
}

# A text table of a report.
sub soak_table
{
	my ($report) = @_;
	my $out = sprintf("%-10s %12s %8s %8s %10s %14s\n",
		'operation', 'transactions', 'retried', 'retries', 'deadlocks', 'serialization');
	my %sum;
	foreach my $name (@{ $report->{order} })
	{
		my $r = $report->{ops}{$name};
		$out .= sprintf("%-10s %12d %8d %8d %10d %14d\n",
			$name, @$r{qw(transactions retried retries deadlocks serialization)});
		$sum{$_} += $r->{$_} foreach keys %$r;
	}
	$out .= sprintf("%-10s %12d %8d %8d %10d %14d\n",
		'all', @sum{qw(transactions retried retries deadlocks serialization)});
	return $out;
}

1;
