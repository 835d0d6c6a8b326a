# A physical streaming standby: the reporting views and the read functions
# work read-only there and give the primary's figures; the group operations
# are refused as writes.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1, extra => [ '--encoding=UTF8', '--locale=C' ]);
$primary->start;

$primary->safe_psql('postgres', q{
CREATE EXTENSION patron_group;
CREATE TABLE patron (id bigint PRIMARY KEY, family_name text NOT NULL, given_name text,
                     barcode text UNIQUE);
CREATE TABLE loan (id serial PRIMARY KEY, patron bigint NOT NULL REFERENCES patron,
                   due timestamptz NOT NULL, returned timestamptz);
CREATE INDEX ON loan (patron);
CREATE TABLE charge (id serial PRIMARY KEY, patron bigint NOT NULL REFERENCES patron,
                     amount numeric(8,2) NOT NULL);
CREATE INDEX ON charge (patron);
INSERT INTO patron VALUES (1, 'Alvarez', 'Maria', 'A-1'), (2, 'Alvarez', 'Sofia', 'A-2'),
    (3, 'Chen', 'Wei', 'C-3');
SELECT patron_group.attach_patrons('patron', barcode_column => 'barcode',
    name_columns => '{family_name,given_name}');
SELECT patron_group.attach_circulations('loan', 'patron', 'due', open_when => 'returned IS NULL');
SELECT patron_group.attach_money('charge', 'charge', 'amount', 'patron');
SELECT patron_group.move_to_group(2, 1, 'family');
SELECT patron_group.set_lead(1);
SELECT patron_group.set_consent(2, 'bills', true);
INSERT INTO loan (patron, due) VALUES (1, now() + interval '7 days'), (2, now() - interval '2 days');
INSERT INTO charge (patron, amount) VALUES (2, 1.50), (3, 4.00);
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# changes after the backup reach the standby by streaming
$primary->safe_psql('postgres', q{
SELECT patron_group.set_group_label(group_id, 'Alvarez') FROM patron_group.accounts WHERE patron_id = 1;
INSERT INTO charge (patron, amount) VALUES (1, 2.25);
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

my @reads = (
	'SELECT * FROM patron_group.group_summary ORDER BY group_id',
	'SELECT * FROM patron_group.member_summary ORDER BY patron_id',
	'SELECT * FROM patron_group.membership_history ORDER BY event_id',
	'SELECT * FROM patron_group.attachment_status ORDER BY attached_table::oid',
	'SELECT * FROM patron_group.group_members(2)',
	'SELECT * FROM patron_group.verify()',
	'SELECT * FROM patron_group.health()',
	q{SELECT patron_group.resolve_barcode('a-1')},
	q{SELECT * FROM patron_group.find_patron('A-2')});
for my $sql (@reads)
{
	my $on_primary = $primary->safe_psql('postgres', $sql);
	my ($ret, $on_standby, $err) = $standby->psql('postgres', $sql);
	is($ret, 0, "standby runs: $sql") or diag($err);
	is($on_standby, $on_primary, "standby gives the primary's figures: $sql");
}
like($standby->safe_psql('postgres', 'SELECT label, items_out, items_overdue, balance_owed FROM patron_group.group_summary'),
	qr/^Alvarez\|2\|1\|3\.75$/, 'the standby sees the streamed label and totals');

# writes are refused with the standby's read-only error, nothing half done
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT patron_group.move_to_group(3, 1)');
isnt($ret, 0, 'a group operation on the standby fails');
like($err, qr/read-only transaction/, 'with the read-only error');

$standby->stop;
$primary->stop;
done_testing();
