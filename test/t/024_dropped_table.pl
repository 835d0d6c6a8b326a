# An attached table dropped by the library system (an upgrade of the
# library system replacing its payments table): health() and
# attachment_status say so, and the extension can still be detached and
# removed.  The server restarts after a crash here, so that a crash fails
# this test and not the ones after it.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dropped');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;

load_library($node, 'library');
$node->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($node, 'library');
$node->safe_psql('library', q{SELECT patron_group.protect('ils.payment')});

my ($ret, $stdout, $stderr) = $node->psql('library', 'DROP TABLE ils.payment');
is($stderr, '', 'an attached, protected table can be dropped');

# Run SQL; if the server crashed, wait until it accepts connections again.
sub run_sql
{
	my ($sql) = @_;
	my ($r, $o, $e) = $node->psql('library', $sql);
	if ($e =~ /server closed the connection unexpectedly/)
	{
		$node->poll_query_until('library', 'SELECT 1', '1');
	}
	return ($r, $o, $e);
}

# the other attached tables go on counting
($ret, $stdout, $stderr) = run_sql(q{
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
VALUES (6, 470, now(), now() + interval '21 days');
SELECT items_out FROM patron_group.accounts WHERE patron_id = 6;
});
is("$stdout$stderr", '1', 'a checkout is still counted');

($ret, $stdout, $stderr) = run_sql('SELECT count(*) >= 0 FROM patron_group.verify()');
is("$stdout$stderr", 't', 'verify() runs after an attached table was dropped');

($ret, $stdout, $stderr) = run_sql(
	q{SELECT count(*) > 0 FROM patron_group.health() WHERE check_name = 'missing trigger'});
is("$stdout$stderr", 't', 'health() reports the dropped table\'s missing triggers');

($ret, $stdout, $stderr) = run_sql('SELECT patron_group.detach_all()');
is($stderr, '', 'detach_all() after an attached table was dropped');
is($stdout, '5', 'detach_all() detaches all five, the dropped one too');

($ret, $stdout, $stderr) = run_sql('DROP EXTENSION patron_group');
is($stderr, '', 'DROP EXTENSION then succeeds');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		              WHERE c.relnamespace = 'ils'::regnamespace AND NOT t.tgisinternal}),
	'0', 'no trigger left on the library\'s tables');
is( $node->safe_psql(
		'library', q{SELECT count(*) FROM pg_class
		              WHERE relnamespace = 'ils'::regnamespace AND relrowsecurity}),
	'0', 'no row-level security left');

$node->stop;

done_testing();
