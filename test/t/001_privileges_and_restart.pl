# Privileges: a role given patron_group.grant_staff() can run the group
# operations and read the group tables, a plain role can do neither, and the
# history records who acted.  Then a restart: groups, accounts and history
# survive unchanged and the patron table's triggers keep working.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

# Connection string for the given role.
sub as_role
{
	my ($role) = @_;
	return $node->connstr('postgres') . " user=$role";
}

# Run SQL as a role that should be refused; check the error.
sub refused
{
	my ($role, $sql, $error, $name) = @_;
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', $sql, connstr => as_role($role));
	isnt($ret, 0, "$name: fails");
	like($stderr, $error, "$name: error message");
}

# A small library system: five patrons, attached; one staff role, one not.
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION patron_group;
CREATE TABLE ils_patron (
    id          bigint PRIMARY KEY,
    family_name text,
    given_name  text,
    barcode     text
);
INSERT INTO ils_patron VALUES
    (1, 'Alvarez', 'Ana',   '29000001'),
    (2, 'Alvarez', 'Bruno', '29000002'),
    (3, 'Chen',    'Li',    '29000003'),
    (4, 'Chen',    'Mei',   '29000004'),
    (5, 'Okafor',  'Ada',   '29000005');
SELECT patron_group.attach_patrons('ils_patron',
    barcode_column => 'barcode',
    name_columns => '{family_name,given_name}');
CREATE ROLE staff LOGIN;
CREATE ROLE plain LOGIN;
SELECT patron_group.grant_staff('staff');
-- lookups read the library system's table with the caller's rights
GRANT SELECT ON ils_patron TO staff;
});

is($node->safe_psql('postgres', 'SELECT count(*) FROM patron_group.accounts'),
	'5', 'every patron has an account');

# --- a role without the staff grant --------------------------------------

refused('plain', 'SELECT patron_group.move_to_group(2, 1)',
	qr/permission denied for function move_to_group/,
	'plain role: move_to_group');
refused('plain', 'SELECT patron_group.move_to_group(ARRAY[2, 3]::bigint[], 1)',
	qr/permission denied for function move_to_group/,
	'plain role: move_to_group of several patrons');
refused('plain', 'SELECT * FROM patron_group.accounts',
	qr/permission denied for table accounts/,
	'plain role: read accounts');
refused('plain', 'SELECT * FROM patron_group.group_members(1)',
	qr/permission denied for function group_members/,
	'plain role: group_members');
refused('plain', q{SELECT patron_group.grant_staff('plain')},
	qr/permission denied for function grant_staff/,
	'plain role: grant_staff');

# normalize_barcode is the one function everybody may run
is( $node->safe_psql(
		'postgres', q{SELECT patron_group.normalize_barcode(' 2900 0001 ')},
		connstr => as_role('plain')),
	'29000001',
	'plain role: normalize_barcode');

is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM patron_group.accounts WHERE group_id IS NOT NULL'),
	'0',
	'refused calls changed nothing');

# --- the staff role -------------------------------------------------------

is( $node->safe_psql(
		'postgres', q{
SET patron_group.application_user = 'desk1';
SELECT patron_group.move_to_group(2, 1, 'same household');
},
		connstr => as_role('staff')),
	'1',
	'staff: move_to_group creates group 1');

$node->safe_psql(
	'postgres', q{
SET patron_group.application_user = 'desk1';
SELECT patron_group.move_to_group(4, 3, 'same household');
SELECT patron_group.set_lead(1, true, 'parent');
SELECT patron_group.set_group_label(1, 'Alvarez family');
},
	connstr => as_role('staff'));

is( $node->safe_psql(
		'postgres', q{
SELECT group_id, group_label, member_id, barcode, display_name, is_lead
  FROM patron_group.group_members(2)
},
		connstr => as_role('staff')),
	"1|Alvarez family|1|29000001|Alvarez, Ana|t\n"
	  . "1|Alvarez family|2|29000002|Alvarez, Bruno|f\n"
	  . "1|Alvarez family|||Group total|",
	'staff: group_members');

is( $node->safe_psql(
		'postgres', q{
SELECT patron_id, group_id, is_lead FROM patron_group.accounts ORDER BY patron_id
},
		connstr => as_role('staff')),
	"1|1|t\n2|1|f\n3|2|f\n4|2|f\n5||f",
	'staff: read accounts');

# the history names the database role and the desk user
is( $node->safe_psql(
		'postgres', q{
SELECT db_role, app_user, action, patron_id, from_group, to_group, reason
  FROM patron_group.history ORDER BY event_id
}),
	"staff|desk1|join|1||1|same household\n"
	  . "staff|desk1|join|2||1|same household\n"
	  . "staff|desk1|join|3||2|same household\n"
	  . "staff|desk1|join|4||2|same household\n"
	  . "staff|desk1|lead_on|1|1|1|parent\n"
	  . "staff|desk1|label|||1|label set to 'Alvarez family'",
	'history records db_role staff and app_user desk1');

# staff reads the group tables but does not write them directly
refused('staff', 'UPDATE patron_group.accounts SET is_lead = true',
	qr/permission denied for table accounts/,
	'staff: direct UPDATE of accounts');

# --- restart --------------------------------------------------------------

my %state_sql = (
	groups => 'SELECT * FROM patron_group.groups ORDER BY group_id',
	accounts => 'SELECT * FROM patron_group.accounts ORDER BY patron_id',
	history => 'SELECT * FROM patron_group.history ORDER BY event_id');
my %before =
  map { $_ => $node->safe_psql('postgres', $state_sql{$_}) } keys %state_sql;
my $started_before =
  $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->restart;

isnt($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started_before, 'the server restarted');
foreach my $table (sort keys %state_sql)
{
	is($node->safe_psql('postgres', $state_sql{$table}),
		$before{$table}, "$table unchanged after restart");
}

# the patron table's triggers still work: new patrons get accounts
$node->safe_psql('postgres',
	q{INSERT INTO ils_patron VALUES (6, 'Okafor', 'Chidi', '29000006')});
$node->safe_psql('postgres', 'GRANT INSERT ON ils_patron TO staff');
$node->safe_psql('postgres',
	q{INSERT INTO ils_patron VALUES (7, 'Novak', 'Eva', '29000007')},
	connstr => as_role('staff'));
is( $node->safe_psql(
		'postgres', q{
SELECT patron_id, group_id, is_lead FROM patron_group.accounts
 WHERE patron_id >= 6 ORDER BY patron_id
}),
	"6||f\n7||f",
	'patrons inserted after restart get accounts');

# and a fresh backend records its desk user
is( $node->safe_psql(
		'postgres', q{
SET patron_group.application_user = 'desk2';
SELECT patron_group.move_to_group(6, 5, 'siblings');
},
		connstr => as_role('staff')),
	'3',
	'staff: move after restart creates group 3');
is( $node->safe_psql(
		'postgres', q{
SELECT db_role, app_user, action, patron_id, from_group, to_group, reason
  FROM patron_group.history WHERE reason = 'siblings' ORDER BY event_id
}),
	"staff|desk2|join|5||3|siblings\nstaff|desk2|join|6||3|siblings",
	'history after restart');
is( $node->safe_psql(
		'postgres', q{
SELECT group_id, member_count, lead_count FROM patron_group.groups ORDER BY group_id
}),
	"1|2|1\n2|2|0\n3|2|0",
	'group counts after restart');

$node->stop;

done_testing();
