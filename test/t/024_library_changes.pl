# The library system changes under the extension: an attached table
# dropped (an upgrade of the library system replacing its payments table,
# with CASCADE, since the table's mapping view depends on it),
# its schema renamed.  The extension goes on working, health() says what
# is wrong, and the extension can still be detached and removed.  The server restarts after a crash here, so that a crash fails
# this test and not the ones after it.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PatronGroupLibrary;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('changes');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;

load_library($node, 'library');
$node->safe_psql('library', 'CREATE EXTENSION patron_group');
attach_library($node, 'library');
$node->safe_psql('library', q{SELECT patron_group.protect('ils.payment')});

# the mapping view depends on the table, as a view or a foreign key would:
# a plain DROP is refused and says why; with CASCADE the view goes too
my ($ret, $stdout, $stderr) = $node->psql('library', 'DROP TABLE ils.payment');
like($stderr, qr/view patron_group\.payment_map depends on table ils\.payment/,
	'dropping an attached table is refused, naming its mapping view');
($ret, $stdout, $stderr) = $node->psql('library', 'DROP TABLE ils.payment CASCADE');
like($stderr, qr/drop cascades to view patron_group\.payment_map/,
	'an attached, protected table can be dropped with CASCADE');

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
	q{SELECT count(*) > 0 FROM patron_group.health() WHERE check_name = 'dropped table'});
is("$stdout$stderr", 't', 'health() reports the dropped table');

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

# --- the library system's schema renamed ------------------------------------

# The barcode index is recorded by name; after ALTER SCHEMA ... RENAME the
# extension must still find it, and removing the extension must take it off.
load_library($node, 'renamed');
$node->safe_psql('renamed', 'CREATE EXTENSION patron_group');
attach_library($node, 'renamed');
$node->safe_psql('renamed', 'ALTER SCHEMA ils RENAME TO library_system');
my ($r, $o, $e) = $node->psql('renamed',
	q{SELECT patron_id FROM patron_group.find_patron('29000000000060')});
is("$o$e", '6', 'renamed schema: find_patron()');
($r, $o, $e) = $node->psql('renamed',
	q{SELECT array_agg(m) FROM patron_group.attachment_status, unnest(missing) m});
is("$o$e", '', 'renamed schema: attachment_status misses nothing');
($r, $o, $e) = $node->psql('renamed', 'SELECT * FROM patron_group.health()');
is("$o$e", '', 'renamed schema: health() finds nothing');
($r, $o, $e) = $node->psql('renamed',
	'SELECT patron_group.detach_all(); DROP EXTENSION patron_group');
is($e, '', 'renamed schema: detach_all() and DROP EXTENSION');
is( $node->safe_psql(
		'renamed', q{SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		              WHERE c.relnamespace = 'library_system'::regnamespace
		                AND i.indexprs IS NOT NULL}),
	'0', 'renamed schema: no barcode index left');

$node->stop;

done_testing();
