# The catalogue behind pgbouncer in transaction pooling mode: many catalogue
# clients share a few server connections, and each transaction asserts a
# different patron with token_nonce() and act_as_proof(), the proof
# computed in the statement (pgcrypto) so that the nonce and the proof share
# one transaction even in an autocommitted statement (pgbench -M extended).  Every transaction must see exactly its
# own patron's rows and those its consenting family lets it see (every row
# returned is checked against a ground truth computed here, in Perl, from
# the fixture), no identity may survive into the next transaction on the
# same server connection, whether the last one committed, rolled back or was
# a single autocommitted statement, and pgbouncer must have served the
# clients with fewer server connections than there were clients.
#
# Needs Debian's pgbouncer (scripts/common.sh installs it for make test);
# skips when the binary is absent.

use strict;
use warnings;

use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my ($pgbouncer) = grep { -x $_ }
  map { File::Spec->catfile($_, 'pgbouncer') }
  (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/local/sbin', '/usr/local/bin');
plan skip_all => 'pgbouncer is not installed (Debian package pgbouncer): '
  . 'this test needs its binary'
  unless $pgbouncer;

my $POOL_SIZE = 3;
my $CLIENTS = 24;
my $PER_CLIENT = 80;
my $PATRONS = 60;

# --- the fixture, and what each patron may see --------------------------------

# Families: [lead or undef, {member => [kinds consented]}].  Everyone else
# is alone.
my @families = (
	[ 1, { 1 => [], 2 => ['circulations'], 3 => [], 4 => [ 'circulations', 'bills' ], 5 => ['bills'] } ],
	[ 10, { 10 => ['bills'], 11 => ['circulations'], 12 => [] } ],
	# consents, but nobody leads: nobody sees anyone else's rows
	[ undef, { 20 => [], 21 => ['circulations'], 22 => ['bills'] } ],
	# a consent withdrawn counts for nothing; one with an end date counts until then
	[ 40, { 40 => [], 41 => ['circulations'], 42 => [] } ],
);
my (%group_of, %lead, %consents);
for my $g (0 .. $#families)
{
	my ($lead, $members) = @{ $families[$g] };
	$lead{$lead} = 1 if defined $lead;
	for my $m (keys %$members)
	{
		$group_of{$m} = $g;
		$consents{$m}{$_} = 1 for @{ $members->{$m} };
	}
}

my (@patrons, @cards, @loans, @xacts, @bills);
my ($card_id, $loan_id, $xact_id, $bill_id) = (0, 0, 0, 0);
for my $p (1 .. $PATRONS)
{
	push @patrons, [ $p, sprintf('Patron %02d', $p) ];
	push @cards, [ ++$card_id, $p, sprintf('2900%010d', $card_id) ] for 1 .. 1 + ($p % 2);
	# some open, some returned: a returned loan is still the patron's row
	for my $i (1 .. $p % 4)
	{
		push @loans, [ ++$loan_id, $p, ($i % 3 == 0 ? 'returned' : 'open') ];
	}
	for my $i (1 .. $p % 3)
	{
		push @xacts, [ ++$xact_id, $p ];
		push @bills, [ ++$bill_id, $xact_id ];
	}
}
my %xact_patron = map { $_->[0] => $_->[1] } @xacts;

# The rows patron $p may see in a table whose rows belong to patrons, for a
# consent kind (undef: only one's own, as for patron and card rows: a lead
# has members' names through group_members(), never their rows).
sub may_see
{
	my ($p, $owner, $kind) = @_;
	return 1 if $owner == $p;
	return 0 unless defined $kind && $lead{$p};
	return 0 unless defined $group_of{$p} && defined $group_of{$owner};
	return 0 unless $group_of{$p} == $group_of{$owner};
	return $consents{$owner}{$kind} ? 1 : 0;
}

sub pg_array { return '{' . join(',', sort { $a <=> $b } @_) . '}' }

my %truth;
for my $p (1 .. $PATRONS)
{
	$truth{$p} = {
		loans => pg_array(map { $_->[0] } grep { may_see($p, $_->[1], 'circulations') } @loans),
		bills => pg_array(map { $_->[0] } grep { may_see($p, $xact_patron{ $_->[1] }, 'bills') } @bills),
		cards => pg_array(map { $_->[0] } grep { may_see($p, $_->[1], undef) } @cards),
		patrons => pg_array(map { $_->[0] } grep { may_see($p, $_->[0], undef) } @patrons),
	};
}

sub values_sql
{
	my ($table, @rows) = @_;
	return "INSERT INTO $table VALUES "
	  . join(', ', map { '(' . join(', ', map { /^\d+$/ ? $_ : "'$_'" } @$_) . ')' } @rows) . ";\n";
}

# --- the server -----------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE library');
my $setup = q{
CREATE EXTENSION patron_group;
CREATE SCHEMA lib;
CREATE TABLE lib.patron (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE lib.card (id bigint PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron, barcode text NOT NULL);
CREATE TABLE lib.loan (id bigint PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron,
                       due timestamptz NOT NULL DEFAULT now() + interval '2 weeks', returned timestamptz);
CREATE TABLE lib.xact (id bigint PRIMARY KEY, patron bigint NOT NULL REFERENCES lib.patron);
CREATE TABLE lib.bill (id bigint PRIMARY KEY, xact bigint NOT NULL REFERENCES lib.xact, amount numeric(8,2) NOT NULL DEFAULT 1.50);
CREATE INDEX ON lib.card (patron);
CREATE INDEX ON lib.loan (patron);
CREATE INDEX ON lib.xact (patron);
CREATE INDEX ON lib.bill (xact);
};
$setup .= values_sql('lib.patron', @patrons);
$setup .= values_sql('lib.card', @cards);
$setup .= "INSERT INTO lib.loan (id, patron, returned) VALUES "
  . join(', ', map { "($_->[0], $_->[1], " . ($_->[2] eq 'returned' ? 'now()' : 'NULL') . ')' } @loans)
  . ";\n";
$setup .= values_sql('lib.xact', @xacts);
$setup .= "INSERT INTO lib.bill (id, xact) VALUES " . join(', ', map { "($_->[0], $_->[1])" } @bills) . ";\n";
$setup .= q{
SELECT patron_group.attach_patrons('lib.patron', name_columns => '{name}');
SELECT patron_group.attach_cards('lib.card', 'patron', 'barcode');
SELECT patron_group.attach_circulations('lib.loan', 'patron', 'due', open_when => 'returned IS NULL');
SELECT patron_group.attach_money('lib.bill', 'charge', 'amount', 'xact', via => 'lib.xact');
};
for my $g (@families)
{
	my ($lead, $members) = @$g;
	my @m = sort { $a <=> $b } keys %$members;
	my $first = shift @m;
	$setup .= "SELECT patron_group.move_to_group(ARRAY[" . join(',', @m) . "]::bigint[], into_group_of => $first);\n";
	$setup .= "SELECT patron_group.set_lead($lead);\n" if defined $lead;
	for my $p (sort { $a <=> $b } keys %$members)
	{
		for my $kind (@{ $members->{$p} })
		{
			my $until = $p == 41 ? ", until => now() + interval '1 day'" : '';
			$setup .= "SELECT patron_group.set_consent($p, '$kind', true$until);\n";
		}
	}
}
# patron 42 said yes to loans once, then no
$setup .= q{
SELECT patron_group.set_consent(42, 'circulations', true);
SELECT patron_group.set_consent(42, 'circulations', false);
CREATE ROLE opac LOGIN;
CREATE ROLE signin;
GRANT USAGE ON SCHEMA lib TO opac;
GRANT SELECT ON ALL TABLES IN SCHEMA lib TO opac;
GRANT EXECUTE ON FUNCTION patron_group.issue_token(bigint, interval) TO signin;
CREATE EXTENSION pgcrypto;
SELECT patron_group.register_patron_facing('opac');
SELECT patron_group.protect(t) FROM unnest('{lib.patron,lib.card,lib.loan,lib.bill}'::regclass[]) t;

-- the test's own tables: the tokens the sign-in service handed out, the
-- ground truth, and what each transaction saw
CREATE SCHEMA pooltest;
CREATE TABLE pooltest.tokens (n int PRIMARY KEY, patron bigint NOT NULL, token text NOT NULL);
CREATE TABLE pooltest.truth (patron bigint PRIMARY KEY, loans bigint[] NOT NULL, bills bigint[] NOT NULL,
                             cards bigint[] NOT NULL, patrons bigint[] NOT NULL);
CREATE TABLE pooltest.seen (id bigserial PRIMARY KEY, client int NOT NULL, backend_pid int NOT NULL,
                            patron bigint NOT NULL, acting bigint, loans bigint[], bills bigint[],
                            cards bigint[], patrons bigint[], at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT USAGE ON SCHEMA pooltest TO opac;
GRANT SELECT ON pooltest.tokens, pooltest.truth TO opac;
GRANT INSERT ON pooltest.seen TO opac;
GRANT USAGE ON SEQUENCE pooltest.seen_id_seq TO opac;
SET ROLE signin;
CREATE TEMP TABLE issued AS
  SELECT p AS n, p AS patron, patron_group.issue_token(p, '2 hours') AS token FROM generate_series(1, }
  . $PATRONS . q{) p;
RESET ROLE;
INSERT INTO pooltest.tokens SELECT * FROM issued;
};
$setup .= "INSERT INTO pooltest.truth VALUES "
  . join(', ',
	map { "($_, '$truth{$_}{loans}', '$truth{$_}{bills}', '$truth{$_}{cards}', '$truth{$_}{patrons}')" }
	  sort { $a <=> $b } keys %truth)
  . ";\n";
$node->safe_psql('library', $setup);

is($node->safe_psql('library', 'SELECT count(*) FROM pooltest.tokens'),
	$PATRONS, 'a token for every patron');
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 'verify() returns no rows after setting up the fixture');
# the fixture must exercise what it claims to
sub loans_of { my %of = map { $_ => 1 } @_; return pg_array(map { $_->[0] } grep { $of{ $_->[1] } } @loans) }
is($truth{1}{loans}, loans_of(1, 2, 4),
	'ground truth: lead 1 sees her loans and those of the two members who consented to loans');
is($truth{1}{patrons}, '{1}', 'ground truth: lead 1 sees her own patron row only');
is($truth{40}{loans}, loans_of(40, 41), 'ground truth: a withdrawn consent counts for nothing');
is($truth{2}{loans}, loans_of(2), 'ground truth: a member who is not a lead sees only her own loans');
is($truth{21}{loans}, loans_of(21), 'ground truth: in a group with no lead nobody sees another member');

# --- pgbouncer ------------------------------------------------------------------

my $bouncer_dir = PostgreSQL::Test::Utils::tempdir;
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $host = $node->host;
my $pgport = $node->port;
append_to_file("$bouncer_dir/userlist.txt", qq{"opac" ""\n"pgb_admin" ""\n});
append_to_file(
	"$bouncer_dir/pgbouncer.ini", qq{
[databases]
library = host=$host port=$pgport dbname=library

[pgbouncer]
pool_mode = transaction
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $bouncer_dir/userlist.txt
admin_users = pgb_admin
default_pool_size = $POOL_SIZE
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = $POOL_SIZE
max_client_conn = 200
logfile = $bouncer_dir/pgbouncer.log
pidfile = $bouncer_dir/pgbouncer.pid
});

my ($b_out, $b_err) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$bouncer_dir/pgbouncer.ini" ],
	'>', \$b_out, '2>', \$b_err);
END
{
	# stop pgbouncer even when the test dies
	$bouncer->kill_kill if $bouncer;
}

my @via_bouncer = ('-h', '127.0.0.1', '-p', $bport);

# The admin console: SHOW $what as a list of hashes, one per row.
sub show
{
	my ($what) = @_;
	my ($ok, $out, $err) = run_psql_cmd(
		[ 'psql', '-X', '-A', '-F', '|', '-v', 'ON_ERROR_STOP=1', @via_bouncer,
			'-U', 'pgb_admin', '-d', 'pgbouncer', '-c', "SHOW $what" ]);
	return undef unless $ok;
	my @lines = grep { !/^\(\d+ rows?\)$/ && $_ ne '' } split /\n/, $out;
	my @head = split /\|/, shift(@lines) // '', -1;
	return [ map { my @v = split /\|/, $_, -1; my %r; @r{@head} = @v; \%r } @lines ];
}

sub run_psql_cmd
{
	my ($cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err);
	chomp($out);
	return ($ok ? 1 : 0, $out, $err);
}

my $ready = 0;
for (1 .. 100)
{
	my ($ok) = run_psql_cmd(
		[ 'psql', '-X', '-At', @via_bouncer, '-U', 'opac', '-d', 'library', '-c', 'SELECT 1' ]);
	if ($ok) { $ready = 1; last; }
	usleep(100_000);
}
ok($ready, 'pgbouncer accepts the catalogue on 127.0.0.1')
  or BAIL_OUT("pgbouncer did not start: $b_err " . (-e "$bouncer_dir/pgbouncer.log" ? slurp_file("$bouncer_dir/pgbouncer.log") : ''));
my $config = show('CONFIG');
my %config = map { $_->{key} => $_->{value} } @{ $config // [] };
is($config{pool_mode}, 'transaction', 'pgbouncer pools by transaction');

# --- the catalogue's transactions --------------------------------------------

my $scripts = PostgreSQL::Test::Utils::tempdir;
# A patron signs in and browses: each statement of the transaction is checked
# against the ground truth; what it saw is kept for the checks below.
append_to_file(
	"$scripts/browse.sql", qq{
\\set n random(1, $PATRONS)
BEGIN;
SELECT 1 / (patron_group.current_patron() IS NULL)::int AS fresh, patron, token FROM pooltest.tokens WHERE n = :n \\gset
SELECT patron_group.act_as_proof(:patron, split_part(:token, '.', 3)::bigint, encode(hmac(patron_group.token_nonce(), :token, 'sha256'), 'hex')) AS acting \\gset
INSERT INTO pooltest.seen (client, backend_pid, patron, acting, loans, bills, cards, patrons)
SELECT :client_id, pg_backend_pid(), :patron, patron_group.current_patron(),
       ARRAY(SELECT id FROM lib.loan ORDER BY id), ARRAY(SELECT id FROM lib.bill ORDER BY id),
       ARRAY(SELECT id FROM lib.card ORDER BY id), ARRAY(SELECT id FROM lib.patron ORDER BY id);
SELECT 1 / coalesce((SELECT :acting = t.patron
                            AND ARRAY(SELECT id FROM lib.loan ORDER BY id) = t.loans
                            AND ARRAY(SELECT id FROM lib.bill ORDER BY id) = t.bills
                            AND ARRAY(SELECT id FROM lib.card ORDER BY id) = t.cards
                            AND ARRAY(SELECT id FROM lib.patron ORDER BY id) = t.patrons
                       FROM pooltest.truth t WHERE t.patron = :patron), false)::int AS same \\gset
COMMIT;
});
# Signs in, then the transaction is rolled back.
append_to_file(
	"$scripts/rollback.sql", qq{
\\set n random(1, $PATRONS)
BEGIN;
SELECT 1 / (patron_group.current_patron() IS NULL)::int AS fresh, patron, token FROM pooltest.tokens WHERE n = :n \\gset
SELECT 1 / (patron_group.act_as_proof(:patron, split_part(:token, '.', 3)::bigint, encode(hmac(patron_group.token_nonce(), :token, 'sha256'), 'hex')) = :patron)::int AS acting \\gset
SELECT 1 / (SELECT count(*) > 0 FROM lib.patron)::int AS sees_herself \\gset
ROLLBACK;
});
# Signs in with a statement of its own, outside any BEGIN: the next
# statement is another transaction, on whichever server connection
# pgbouncer picks, and must act for nobody and see nothing.
append_to_file(
	"$scripts/autocommit.sql", qq{
\\set n random(1, $PATRONS)
SELECT 1 / (patron_group.current_patron() IS NULL)::int AS fresh, patron, token FROM pooltest.tokens WHERE n = :n \\gset
SELECT 1 / (patron_group.act_as_proof(:patron, split_part(:token, '.', 3)::bigint, encode(hmac(patron_group.token_nonce(), :token, 'sha256'), 'hex')) = :patron)::int AS acting \\gset
SELECT 1 / (patron_group.current_patron() IS NULL
            AND NOT EXISTS (SELECT FROM lib.patron) AND NOT EXISTS (SELECT FROM lib.card)
            AND NOT EXISTS (SELECT FROM lib.loan) AND NOT EXISTS (SELECT FROM lib.bill))::int AS gone \\gset
});

my ($pgb_out, $pgb_err) = ('', '');
my @pgbench = (
	'pgbench', '-n', '-M', 'extended', '-c', $CLIENTS, '-j', 4, '-t', $PER_CLIENT,
	'-f', "$scripts/browse.sql\@6", '-f', "$scripts/rollback.sql\@2",
	'-f', "$scripts/autocommit.sql\@2", @via_bouncer, '-U', 'opac', 'library');
note(join(' ', @pgbench));
my $run = IPC::Run::start(\@pgbench, '<', \undef, '>', \$pgb_out, '2>', \$pgb_err);

# While it runs: how many clients and server connections the pool has.
my ($max_clients, $max_servers, $samples) = (0, 0, 0);
while ($run->pumpable)
{
	$run->pump_nb;
	my $pools = show('POOLS') // [];
	for my $pool (grep { $_->{database} eq 'library' && $_->{user} eq 'opac' } @$pools)
	{
		my $clients = 0;
		$clients += $pool->{$_} // 0 for qw(cl_active cl_waiting);
		my $servers = 0;
		$servers += $pool->{$_} // 0 for qw(sv_active sv_idle sv_used sv_tested sv_login);
		$max_clients = $clients if $clients > $max_clients;
		$max_servers = $servers if $servers > $max_servers;
		$samples++;
	}
	usleep(20_000);
}
my $pgbench_ok = $run->finish;
note($pgb_out);
ok($pgbench_ok, 'pgbench through pgbouncer exits 0') or diag("exit code " . ($run->result(0) // "?") . ": $pgb_err");
unlike($pgb_err, qr/aborted|ERROR/, 'no client aborted, no statement failed')
  or diag($pgb_err);
my $total = $CLIENTS * $PER_CLIENT;
like($pgb_out, qr/number of transactions actually processed: $total\/$total\b/,
	"pgbench completed all $total transactions");
like($pgb_out, qr/number of failed transactions: 0 /, 'pgbench counts no failed transaction')
  if $pgb_out =~ /number of failed transactions/;

ok($samples > 0, "SHOW POOLS was read while the clients ran ($samples samples)");
is($max_clients, $CLIENTS, "SHOW POOLS: all $CLIENTS catalogue clients were connected at once");
ok($max_servers >= 1 && $max_servers <= $POOL_SIZE,
	"SHOW POOLS: at most $POOL_SIZE server connections served them (saw $max_servers)");
ok($max_servers < $max_clients,
	"SHOW POOLS: fewer server connections ($max_servers) than clients ($max_clients)");
my $servers = show('SERVERS');
my @library_servers = grep { $_->{database} eq 'library' } @{ $servers // [] };
ok(@library_servers >= 1 && @library_servers <= $POOL_SIZE,
	'SHOW SERVERS: ' . scalar(@library_servers) . " server connections to library after the run");

# --- what the transactions saw, from the server's side ----------------------

# every committed browse transaction left one row; each is compared with the
# ground truth here, independently of the check the transaction made itself
my $seen = $node->safe_psql('library',
	q{SELECT id, client, backend_pid, patron, coalesce(acting::text, ''), loans, bills, cards, patrons
	    FROM pooltest.seen ORDER BY id});
my @seen = map { [ split /\|/, $_, -1 ] } grep { $_ ne '' } split /\n/, $seen;
my ($bad, %patrons_of_backend, %backend_count) = (0);
for my $row (@seen)
{
	my ($id, $client, $pid, $patron, $acting, $loans, $bills, $cards, $names) = @$row;
	my $t = $truth{$patron};
	my @wrong;
	push @wrong, "acting for '$acting'" unless $acting eq $patron;
	push @wrong, "loans $loans, may see $t->{loans}" unless $loans eq $t->{loans};
	push @wrong, "bills $bills, may see $t->{bills}" unless $bills eq $t->{bills};
	push @wrong, "cards $cards, may see $t->{cards}" unless $cards eq $t->{cards};
	push @wrong, "patrons $names, may see $t->{patrons}" unless $names eq $t->{patrons};
	if (@wrong)
	{
		diag("transaction $id (client $client, backend $pid, patron $patron): " . join('; ', @wrong))
		  if $bad++ < 20;
	}
	$patrons_of_backend{$pid}{$patron} = 1;
	$backend_count{$pid}++;
}
ok(@seen > $total / 3, scalar(@seen) . ' browse transactions recorded what they saw');
is($bad, 0, 'every row every transaction saw was one its patron may see, and it saw all of them');
my %patrons_seen = map { $_->[3] => 1 } @seen;
ok(keys(%patrons_seen) > $PATRONS / 2,
	scalar(keys %patrons_seen) . ' different patrons were served');
ok(keys(%backend_count) <= $POOL_SIZE && keys(%backend_count) < $CLIENTS,
	scalar(keys %backend_count) . " backends served the $CLIENTS clients");
ok(!(grep { keys(%{ $patrons_of_backend{$_} }) < 2 } keys %patrons_of_backend),
	'each backend acted for several patrons, one transaction after another');
# consecutive transactions on one backend for different patrons, each having
# found nobody asserted at its start
my ($switches, %last) = (0);
for my $row (@seen)
{
	my ($pid, $patron) = @$row[ 2, 3 ];
	$switches++ if defined $last{$pid} && $last{$pid} != $patron;
	$last{$pid} = $patron;
}
ok($switches > $POOL_SIZE,
	"$switches times a server connection went from one patron straight to another");

# --- after the run -------------------------------------------------------------

# through the pool, with nobody signed in: nothing asserted, nothing visible,
# on every server connection (more statements than connections)
my $after = '';
for (1 .. 3 * $POOL_SIZE)
{
	my ($ok, $out, $err) = run_psql_cmd(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', @via_bouncer, '-U', 'opac', '-d', 'library', '-c',
			q{SELECT patron_group.current_patron() IS NULL, (SELECT count(*) FROM lib.loan),
			         (SELECT count(*) FROM lib.patron)} ]);
	$after .= $ok ? "$out\n" : "error: $err\n";
}
is($after, "t|0|0\n" x (3 * $POOL_SIZE),
	'after the run, a transaction through the pool acts for nobody and sees no row');

is( $node->safe_psql(
		'library', q{SELECT count(*) <= } . $POOL_SIZE . q{ FROM pg_stat_activity WHERE usename = 'opac'}),
	't', "the server has at most $POOL_SIZE backends for the catalogue");
is($node->safe_psql('library', 'SELECT * FROM patron_group.verify()'),
	'', 'verify() returns no rows after the run');

$bouncer->kill_kill;
undef $bouncer;
$node->stop;
done_testing();
