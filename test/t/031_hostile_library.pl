# A hostile library system: the role that owns the library system's tables
# (ils_owner, not a superuser) plants code on every one of them, and every
# function of patron_group is then called, by the role that would call it,
# with the households attached (attach_patrons' group_column and
# lead_column), so that the extension writes the patron table itself.
#
# What ils_owner plants (test/t/attacks/hostile_library.sql, part "plant"),
# on the patron, card, circulation (partitioned, and each partition),
# transaction (the "via" table, and its inheritance child), billing and
# payment (and its child) tables:
#
#   BEFORE and AFTER, row and statement triggers for INSERT, UPDATE, DELETE;
#   a CHECK constraint; rules ON INSERT/UPDATE/DELETE DO ALSO SELECT; a
#   stored generated column; an expression index; a restrictive and a
#   permissive row-level security policy (FORCE ROW LEVEL SECURITY on the
#   patron and transaction tables); column defaults on mapped columns (the
#   household column, which remove_from_group() makes the extension write
#   with SET household = DEFAULT, first); and, made with the tables before
#   they were attached, domains with a CHECK over mapped columns (the lead
#   column, the card barcode, stop_fines, a billing amount, a payment's
#   voided flag, and the transaction kind).  And what the planner evaluates
#   when it plans any query on the table, a plain SELECT included: IMMUTABLE
#   calls with constant arguments, folded at plan time, in an extended
#   statistics expression, an index expression, a partial index's predicate
#   and a CHECK (constraint exclusion of children and partitions).
#
# Each calls ils.payload(what), which tries ALTER ROLE ils_owner SUPERUSER
# and records in evidence.log current_user, session_user, whether
# current_user is a superuser, and which object fired; it returns true (or
# the usual value), so that nothing the extension relies on changes.
#
# For each operation the test asserts: the expected outcome (no error, or
# the expected SQLSTATE); (a) no watched role gained SUPERUSER, CREATEROLE,
# CREATEDB, REPLICATION, BYPASSRLS or a membership; (b) every evidence row
# written during the operation ran as the table's owner (ils_owner) or as
# the role that called the operation, never as the extension's owner or
# another superuser (so for what the DBA calls, as ils_owner only), judged
# apart for what the executor runs and for what the planner folds; and (c),
# for the group operations, that the extension's statement on the patron
# table ran and the household write-back happened (the household column
# follows a move and is reset to its default by a removal, the lead column
# follows set_lead()), so the test cannot pass by the write-back not running.
# Every function of the extension, listed from pg_proc and pg_depend, must
# have an operation (a function added later without one fails the sweep).
# At the end every planted object must have fired at least once, as someone,
# the households must agree with the groups, and (d) verify() must return no
# rows.
#
# The test's own reads of the library system's tables run as ils_owner, who
# may run its own code: a superuser's plain SELECT there would run the
# planner-evaluated payloads as that superuser.

use strict;
use warnings;

use FindBin;
use Time::HiRes qw(time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $started = time;
my $here = $FindBin::RealBin;

my $node = PostgreSQL::Test::Cluster->new('hostile_library');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
# ANALYZE evaluates index expressions: no autovacuum running ils_owner's
# payload at moments no operation accounts for
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;

my $dba = $node->safe_psql('postgres', 'SELECT current_user');
my @watched = qw(ils_owner staff opac signer supervisor_role);
my $watched_list = join(', ', map { "'$_'" } @watched);
my $db = 'library';

my ($L, $M1, $M2, $O) = (500001, 500002, 500003, 500004);

$node->safe_psql(
	'postgres', qq{
CREATE ROLE ils_owner LOGIN;        -- owns the library system's schema and tables
CREATE ROLE staff LOGIN;            -- the circulation desk
CREATE ROLE opac LOGIN;             -- the catalogue, patron-facing
CREATE ROLE signer LOGIN;           -- the service that signs patrons in
CREATE ROLE supervisor_role LOGIN;  -- may change the group limits
CREATE DATABASE $db;
});

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

sub connstr_as
{
	my ($role) = @_;
	my $c = $node->connstr($db);
	$c .= " user=$role" if defined $role && $role ne $dba;
	return $c;
}

# Run SQL as a role in a new session; errors do not stop the script and
# carry their SQLSTATE (VERBOSITY verbose).  Returns (stdout, stderr).
sub psql_as
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql(
		$db, "\\set VERBOSITY verbose\n\\set SHOW_CONTEXT always\n$sql",
		connstr => connstr_as($role),
		on_error_stop => 0);
	return ($out // '', $err // '');
}

sub sqlstates
{
	my ($err) = @_;
	return join(',', $err =~ /ERROR:\s+([0-9A-Z]{5}):/g);
}

# One value of a query run by the DBA.
sub sql1
{
	my ($sql) = @_;
	return $node->safe_psql($db, $sql);
}

# One value of a query on the library system's tables, run by their owner:
# only ils_owner's own rights are at stake in its code then.
sub ils_value
{
	my ($sql) = @_;
	return $node->safe_psql($db, $sql, connstr => connstr_as('ils_owner'));
}

sub household { return ils_value("SELECT household FROM ils.patron WHERE id = $_[0]"); }
sub lead_flag { return ils_value("SELECT is_lead FROM ils.patron WHERE id = $_[0]"); }
sub last_household { return ils_value("SELECT last_value FROM ils.household_seq"); }
sub group_of { return sql1("SELECT coalesce(group_id::text, 'none') FROM patron_group.accounts WHERE patron_id = $_[0]"); }

my $role_state_sql = qq{
SELECT string_agg(format('%s:super=%s,createrole=%s,createdb=%s,replication=%s,bypassrls=%s',
                         rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication,
                         rolbypassrls), ' ' ORDER BY rolname)
  FROM pg_roles WHERE rolname IN ($watched_list)};
my $member_sql = qq{
SELECT coalesce(string_agg(format('%s in %s', m.member::regrole, m.roleid::regrole), ' '
                           ORDER BY m.member::regrole::text, m.roleid::regrole::text), '')
  FROM pg_auth_members m
 WHERE m.member IN (SELECT oid FROM pg_roles WHERE rolname IN ($watched_list))
    OR m.roleid IN (SELECT oid FROM pg_roles WHERE rolname IN ($watched_list))};

my $baseline_roles = $node->safe_psql('postgres', $role_state_sql);
my $baseline_members = $node->safe_psql('postgres', $member_sql);
unlike($baseline_roles, qr/=t/, 'the watched roles start with no special attributes');
is($baseline_members, '', 'the watched roles start with no memberships');

sub reset_roles
{
	my $sql = join('',
		map { "ALTER ROLE $_ NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;\n" } @watched);
	$sql .= qq{
DO \$\$
DECLARE r record;
BEGIN
    FOR r IN SELECT m.roleid::regrole AS g, m.member::regrole AS m FROM pg_auth_members m
              WHERE m.member IN (SELECT oid FROM pg_roles WHERE rolname IN ($watched_list))
                 OR m.roleid IN (SELECT oid FROM pg_roles WHERE rolname IN ($watched_list))
    LOOP
        EXECUTE format('REVOKE %s FROM %s', r.g, r.m);
    END LOOP;
END
\$\$;
};
	$node->safe_psql('postgres', $sql);
	return;
}

# ---------------------------------------------------------------------------
# The library system, attached with its households, then planted
# ---------------------------------------------------------------------------

my %part;
{
	my $text = slurp_file("$here/attacks/hostile_library.sql");
	my @pieces = split(/^-- @@ (\w+)[ \t]*\n/m, $text);
	shift @pieces;    # the header
	%part = @pieces;
}
ok(defined $part{library} && defined $part{plant}, 'hostile_library.sql has its two parts');

$node->safe_psql($db, $part{library});
$node->safe_psql($db, 'CREATE EXTENSION pgcrypto');
is(sql1("SELECT count(*) FROM patron_group.groups"), '2',
	'attaching imported the two households of two patrons or more as groups');
is(group_of($M1), group_of($L), 'M1 is in the group of L, as in the household');

# ils_owner plants, in a session of its own
my ($plant_out, $plant_err) = psql_as('ils_owner', "\\set ON_ERROR_STOP 1\n" . $part{plant});
is(sqlstates($plant_err), '', 'ils_owner, who is not a superuser, plants on every table of the library system')
  or diag($plant_err);
is(sql1("SELECT rolsuper FROM pg_roles WHERE rolname = 'ils_owner'"), 'f', 'ils_owner is not a superuser');

my @tables = qw(patron card circulation circulation_old circulation_new transaction grocery
  billing payment cash_payment);
my %root = map { $_ => 1 } qw(patron card circulation transaction billing payment);
my %forced = map { $_ => 1 } qw(patron transaction grocery);
foreach my $t (@tables)
{
	my $state = sql1(qq{
SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ils.$t'::regclass AND tgname LIKE 'hostile%')
       || ',' || (SELECT count(*) FROM pg_rewrite WHERE ev_class = 'ils.$t'::regclass AND rulename LIKE 'hostile%')
       || ',' || (SELECT count(*) FROM pg_constraint WHERE conrelid = 'ils.$t'::regclass AND conname LIKE 'hostile%')
       || ',' || (SELECT count(*) FROM pg_attribute WHERE attrelid = 'ils.$t'::regclass AND attgenerated = 's')
       || ',' || (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   WHERE i.indrelid = 'ils.$t'::regclass AND i.indexprs IS NOT NULL
                     AND pg_get_indexdef(i.indexrelid) LIKE '%payload_imm%')
       || ',' || (SELECT count(*) FROM pg_policy WHERE polrelid = 'ils.$t'::regclass AND polname LIKE 'hostile%')
       || ',' || (SELECT count(*) FROM pg_policy WHERE polrelid = 'ils.$t'::regclass AND polname LIKE 'patron\\_group\\_%')
       || ',' || (SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'ils.$t'::regclass AND stxname LIKE 'hostile%')
       || ',' || relrowsecurity || ',' || relforcerowsecurity
  FROM pg_class WHERE oid = 'ils.$t'::regclass});
	my ($trg, $rules, $checks, $gen, $idx, $pol, $ours, $stats, $rls, $force) = split(/,/, $state);
	ok( $trg >= 4 && $rules == 3 && $checks >= 2 && $gen == 1 && $idx >= 2 && $pol == 2
		  && $ours >= 1 && $stats == 1 && $rls eq 'true' && $force eq ($forced{$t} ? 'true' : 'false'),
		"ils.$t carries ils_owner's triggers, rules, CHECKs, generated column, expression indexes, statistics and policies, and the extension's policies"
	) or diag("ils.$t: triggers $trg, rules $rules, checks $checks, generated $gen, indexes $idx, "
		  . "policies $pol (extension's $ours), statistics $stats, rls $rls, force $force");
}

# L's group (the same until detach_all)
my $group_L = sql1("SELECT group_id FROM patron_group.accounts WHERE patron_id = $L");

# a token for L, signed as the sign-in service does
my $token = $node->safe_psql($db, "SELECT patron_group.issue_token($L, '2 hours')",
	connstr => connstr_as('signer'));

# The functions of the extension, from pg_proc and pg_depend.
my @ext_functions = split(
	/\n/,
	sql1(q{
SELECT p.oid::regprocedure::text
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'patron_group')
   AND d.deptype = 'e'
 ORDER BY 1}));
ok(scalar(@ext_functions) > 30, "the extension's functions are listed from pg_proc");
sub has_function
{
	my ($prefix) = @_;
	return scalar grep { index($_, "patron_group.$prefix") == 0 } @ext_functions;
}

# act_as_proof(patron, expires, proof) after token_nonce(), where they exist:
# the proof is the HMAC of the nonce keyed with the token
my $proof_sql = '';
if (has_function('token_nonce(') && has_function('act_as_proof('))
{
	my ($proof_f) = grep { index($_, 'patron_group.act_as_proof(') == 0 } @ext_functions;
	my ($expires_type) = $proof_f =~ /\([^,]+,([^,]+),/;
	my $nonce_type = sql1("SELECT prorettype::regtype FROM pg_proc WHERE oid = 'patron_group.token_nonce'::regproc");
	my ($patron, $expiry) = $token =~ /^pg1\.(\d+)\.(\d+)\./;
	$expiry //= 'NULL';
	my $expires =
	    $expires_type =~ /timestamp/ ? "to_timestamp($expiry)"
	  : $expires_type =~ /int|numeric/ ? $expiry
	  : "'$expiry'";
	my $hmac =
	  $nonce_type eq 'bytea'
	  ? q{hmac(:'nonce'::bytea, convert_to(:'token', 'UTF8'), 'sha256')}
	  : q{hmac(:'nonce', :'token', 'sha256')};
	$proof_sql = qq{\\set token '$token'
BEGIN;
SELECT patron_group.token_nonce() AS nonce \\gset
SELECT encode($hmac, 'hex') AS proof \\gset
SELECT patron_group.act_as_proof($L, $expires, :'proof');
SELECT 'acting|' || coalesce(patron_group.current_patron()::text, 'NULL');
SELECT count(*) FROM ils.circulation;
COMMIT;
};
}

# ---------------------------------------------------------------------------
# The operations
# ---------------------------------------------------------------------------

# Acting for L, as the catalogue does, in one transaction.
sub as_lead
{
	my ($sql) = @_;
	return "BEGIN;\nSELECT patron_group.act_as($L);\n$sql\nCOMMIT;\n";
}

# The households agree with the groups: every patron not deleted shares a
# household with exactly the other members of their group, and a lead of a
# group is the household's lead.  Returns the disagreements ('' for none).
# The patron rows are read as ils_owner, the accounts as the DBA.
sub households_disagree
{
	my %p;
	foreach (split(/\n/, ils_value('SELECT id, household, is_lead, deleted FROM ils.patron')))
	{
		my ($id, $h, $lead, $deleted) = split(/\|/);
		$p{$id} = { household => $h, lead => $lead, deleted => $deleted };
	}
	my %a;
	foreach (split(/\n/, sql1("SELECT patron_id, coalesce(group_id::text, ''), is_lead FROM patron_group.accounts")))
	{
		my ($id, $g, $lead) = split(/\|/);
		$a{$id} = { group => $g, lead => $lead };
	}
	my @wrong;
	foreach my $id (sort keys %p)
	{
		next if $p{$id}{deleted} eq 't';
		my $acc = $a{$id};
		if (!$acc)
		{
			push @wrong, "patron $id has no account";
			next;
		}
		my $household = join(',',
			grep { $_ ne $id && $p{$_}{deleted} ne 't' && $p{$_}{household} eq $p{$id}{household} } sort keys %p);
		my $members = join(',',
			grep { $_ ne $id && $acc->{group} ne '' && $a{$_}{group} eq $acc->{group} } sort keys %a);
		push @wrong, "patron $id: household $p{$id}{household} shared with [$household], group $acc->{group} with [$members]"
		  if $household ne $members;
		push @wrong, "patron $id: lead column $p{$id}{lead}, lead in group $acc->{lead}"
		  if $acc->{group} ne '' && $p{$id}{lead} ne $acc->{lead};
	}
	return join('; ', @wrong);
}

# Each operation: who calls it (staff, supervisor_role, opac, signer,
# ils_owner, or dba: the bootstrap superuser, who owns the extension), its
# SQL, the extension's functions it exercises (trigger functions through the
# statements that fire them; "name(*)" for any signature), the SQLSTATEs it
# ends with (none unless said), what must fire during it (proof that the
# extension's own statement on the library system ran), and a check of its
# outcome.
my @operations = (
	# --- the library system's statements, from the circulation desk ---------
	{
		name => 'checkout (INSERT INTO ils.circulation, limits enforced)',
		who => 'staff',
		sql => "INSERT INTO ils.circulation (patron, item, due_at) VALUES ($L, 'checkout', '2031-08-01');",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'checkout for several patrons, into both partitions',
		who => 'staff',
		sql => "INSERT INTO ils.circulation (patron, item, due_at) VALUES ($M1, 'checkout 2', '2031-08-02'), "
		  . "($O, 'checkout 3', '2025-08-03'), (500006, 'checkout 4', '2031-08-04');",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'renewal',
		who => 'staff',
		sql => "UPDATE ils.circulation SET due_at = '2031-09-01' WHERE item = 'checkout';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'check-in',
		who => 'staff',
		sql => "UPDATE ils.circulation SET checkin_at = '2026-01-01' WHERE item = 'L book 1';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan marked lost',
		who => 'staff',
		sql => "UPDATE ils.circulation SET stop_fines = 'LOST' WHERE item = 'M2 book 1';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan moved to another patron',
		who => 'staff',
		sql => "UPDATE ils.circulation SET patron = 500006 WHERE item = 'M2 book 2';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan deleted',
		who => 'staff',
		sql => "DELETE FROM ils.circulation WHERE item = 'G book';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'each partition named directly: INSERT, UPDATE, DELETE',
		who => 'staff',
		sql => "INSERT INTO ils.circulation_old (patron, item, due_at) VALUES ($M1, 'direct old', '2025-03-01');\n"
		  . "UPDATE ils.circulation_old SET checkin_at = '2026-01-01' WHERE item = 'direct old';\n"
		  . "DELETE FROM ils.circulation_old WHERE item = 'direct old';\n"
		  . "INSERT INTO ils.circulation_new (patron, item, due_at) VALUES ($M1, 'direct new', '2032-03-01');\n"
		  . "UPDATE ils.circulation_new SET stop_fines = 'LOST' WHERE item = 'direct new';\n"
		  . "DELETE FROM ils.circulation_new WHERE item = 'direct new';",
		covers => ['totals_trigger()'],
	},
	# --- patrons and cards --------------------------------------------------
	{
		name => 'patrons registered',
		who => 'staff',
		sql => "INSERT INTO ils.patron (id, family_name, given_name) VALUES "
		  . "(500050, 'New', 'Patron'), (500060, 'Other', 'Patron');",
		covers => [ 'patrons_trigger()', 'accounts_trigger()' ],
	},
	{
		name => 'patron renamed',
		who => 'staff',
		sql => "UPDATE ils.patron SET given_name = 'Maria José' WHERE id = $L;",
		covers => ['patrons_trigger()'],
	},
	{
		name => 'the library system moves households itself (the groups follow)',
		who => 'staff',
		sql => "UPDATE ils.patron SET household = 600 WHERE id = 500010;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()', 'sequence_catch_up()' ],
		check => sub {
			my $g = group_of(500010);
			ok($g ne 'none' && $g eq group_of(500009),
				'the household set by the library system made a group of 500009 and 500010');
		},
	},
	{
		name => 'grouped patron\'s id changed (loans, cards and transactions follow by ON UPDATE CASCADE)',
		who => 'staff',
		sql => "UPDATE ils.patron SET id = 500075 WHERE id = 500005;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()', 'via_trigger()', 'totals_trigger()' ],
	},
	{
		name => 'patron deleted',
		who => 'staff',
		sql => "DELETE FROM ils.patron WHERE id = 500060;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()' ],
	},
	{
		name => 'cards: INSERT, UPDATE, DELETE',
		who => 'staff',
		sql => "INSERT INTO ils.card (patron, barcode) VALUES (500050, 'C50'), (500050, 'C50-X');\n"
		  . "UPDATE ils.card SET active = false WHERE barcode = 'C50-X';\n"
		  . "DELETE FROM ils.card WHERE barcode = 'C50-X';",
		covers => [],
	},
	# --- bills, payments, transactions ---------------------------------------
	{
		name => 'bill inserted, voided, deleted',
		who => 'staff',
		sql => "INSERT INTO ils.billing (xact, amount, note) VALUES (110, 2.25, 'new fine'), (120, 1.00, 'gone');\n"
		  . "UPDATE ils.billing SET voided = true WHERE note = 'L fine';\n"
		  . "DELETE FROM ils.billing WHERE note = 'gone';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'payment into the parent: inserted, voided, deleted',
		who => 'staff',
		sql => "INSERT INTO ils.payment (xact, amount) VALUES (110, 0.25), (140, 0.10);\n"
		  . "UPDATE ils.payment SET voided = true WHERE xact = 140;\n"
		  . "DELETE FROM ils.payment WHERE xact = 110 AND amount = 0.25;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'cash payment (child) named directly: INSERT, UPDATE, DELETE',
		who => 'staff',
		sql => "INSERT INTO ils.cash_payment (xact, amount, drawer) VALUES (120, 0.75, 3);\n"
		  . "UPDATE ils.cash_payment SET voided = true WHERE drawer = 3;\n"
		  . "DELETE FROM ils.cash_payment WHERE drawer = 3;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'transactions: inserted, reassigned to another patron, deleted',
		who => 'staff',
		sql => "INSERT INTO ils.transaction (id, patron) VALUES (190, $O);\n"
		  . "UPDATE ils.transaction SET patron = $O WHERE id = 160;\n"
		  . "DELETE FROM ils.transaction WHERE id = 190;",
		covers => ['via_trigger()'],
	},
	{
		name => 'grocery transaction (child) named directly: INSERT, UPDATE, DELETE',
		who => 'staff',
		sql => "INSERT INTO ils.grocery (id, patron, kind, note) VALUES (195, $M2, 'grocery', 'tote bag');\n"
		  . "INSERT INTO ils.billing (xact, amount, note) VALUES (195, 3.00, 'tote bag');\n"
		  . "UPDATE ils.grocery SET patron = $O WHERE id = 195;\n"
		  . "DELETE FROM ils.billing WHERE xact = 195;\n"
		  . "DELETE FROM ils.grocery WHERE id = 195;",
		covers => ['via_trigger()'],
	},
	# --- the desk's group operations: these make the extension write the
	# --- household and lead columns of the patron table ----------------------
	{
		name => 'resolve_barcode, find_patron, normalize_barcode',
		who => 'staff',
		sql => "SELECT patron_group.resolve_barcode('C1');\n"
		  . "SELECT * FROM patron_group.find_patron(' c2 ');\n"
		  . "SELECT patron_group.normalize_barcode(' c1 ');",
		covers => [ 'resolve_barcode(text)', 'find_patron(text)', 'normalize_barcode(text)' ],
	},
	{
		name => 'move_to_group of one patron (household written back)',
		who => 'staff',
		sql => "SELECT patron_group.move_to_group($O, $L, 'moved in');",
		covers => [ 'move_to_group(bigint,bigint,text)', 'accounts_trigger()' ],
		fires => ['trigger:patron:BEFORE ROW UPDATE'],
		check => sub {
			is(household($O), household($L), 'move_to_group: O\'s household column followed the move into L\'s household');
		},
	},
	{
		name => 'remove_from_group (household reset to its default)',
		who => 'staff',
		sql => "SELECT patron_group.remove_from_group($O, 'moved out');",
		covers => [ 'remove_from_group(bigint,text)', 'accounts_trigger()' ],
		fires => ['default:patron.household'],
		check => sub {
			my $h = household($O);
			ok($h ne household($L) && $h eq last_household(),
				'remove_from_group: O\'s household column got the column\'s default (the next household number)')
			  or diag("O's household $h, L's " . household($L) . ', last number drawn ' . last_household());
		},
	},
	{
		name => 'move_to_group of several patrons into another household\'s group',
		who => 'staff',
		sql => "SELECT patron_group.move_to_group(ARRAY[$O, 500008]::bigint[], 500007, 'new household');",
		covers => [ 'move_to_group(bigint[],bigint,text)', 'accounts_trigger()', 'sequence_catch_up()' ],
		fires => ['trigger:patron:BEFORE ROW UPDATE'],
		check => sub {
			ok(household($O) eq household(500007) && household(500008) eq household(500007),
				'move_to_group of several: both households follow 500007\'s');
		},
	},
	{
		name => 'set_lead on (lead column written back)',
		who => 'staff',
		sql => "SELECT patron_group.set_lead($M1, true, 'co-lead');",
		covers => ['set_lead(bigint,boolean,text)'],
		fires => ['domain:patron.is_lead'],
		check => sub { is(lead_flag($M1), 't', 'set_lead: M1\'s lead column is true'); },
	},
	{
		name => 'set_lead off',
		who => 'staff',
		sql => "SELECT patron_group.set_lead($M1, false);",
		covers => ['set_lead(bigint,boolean,text)'],
		fires => ['domain:patron.is_lead'],
		check => sub { is(lead_flag($M1), 'f', 'set_lead: M1\'s lead column is false again'); },
	},
	{
		name => 'set_group_label',
		who => 'staff',
		sql => "SELECT patron_group.set_group_label($group_L, 'Alvarez family', 'asked at the desk');",
		covers => ['set_group_label(bigint,text,text)'],
	},
	{
		name => 'clone_patron (the clone joins L\'s household)',
		who => 'staff',
		sql => "SELECT patron_group.clone_patron($L, "
		  . q{'{"id": 500080, "given_name": "Lucas", "barcode": "C80"}'} . ", 'save and clone');",
		covers => [ 'clone_patron(bigint,jsonb,text)', 'patrons_trigger()', 'accounts_trigger()', 'balance_from_totals()' ],
		fires => ['trigger:patron:BEFORE ROW UPDATE'],
		check => sub {
			is(household(500080), household($L), 'clone_patron: the clone\'s household column is L\'s');
			is(ils_value("SELECT string_agg(barcode, ',') FROM ils.card WHERE patron = 500080"), 'C80',
				'clone_patron: the clone has its card');
		},
	},
	{
		name => 'group_members, set_consent, patron_details and the reporting views',
		who => 'staff',
		sql => "SELECT * FROM patron_group.group_members($L);\n"
		  . "SELECT patron_group.set_consent($M2, 'bills', true, reason => 'asked');\n"
		  . "SELECT patron_group.set_consent($M2, 'bills', false);\n"
		  . "SELECT * FROM patron_group.patron_details($L);\n"
		  . "SELECT * FROM patron_group.group_summary;\nSELECT * FROM patron_group.member_summary;\n"
		  . "SELECT * FROM patron_group.membership_history;",
		covers => [
			'group_members(bigint)', 'set_consent(bigint,text,boolean,timestamp with time zone,text)',
			'patron_details(bigint)'
		],
	},
	{
		name => 'health, checkout_allowed, payment_plan (staff)',
		who => 'staff',
		sql => "SELECT * FROM patron_group.health();\n"
		  . "SELECT * FROM patron_group.checkout_allowed($L);\n"
		  . "SELECT * FROM patron_group.payment_plan($L, 5.00);",
		covers => [
			'health()', 'verify()', 'expected_triggers()', 'direct_refusal()',
			'checkout_allowed(bigint)', 'payment_plan(bigint,numeric,bigint)'
		],
	},
	{
		name => 'override_limits and a checkout under it',
		who => 'staff',
		sql => "BEGIN;\nSELECT patron_group.override_limits('emergency');\n"
		  . "INSERT INTO ils.circulation (patron, item, due_at) VALUES ($M1, 'override', '2031-10-01');\nCOMMIT;",
		covers => [ 'override_limits(text)', 'limits_trigger()', 'totals_trigger()' ],
	},
	{
		name => 'the library system deletes a grouped patron (deleted_when): they leave the group',
		who => 'staff',
		sql => "UPDATE ils.patron SET deleted = true WHERE id = 500075;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()' ],
		check => sub {
			is(group_of(500075), 'none', 'the deleted patron left the group');
			is(household(500075), household($L), 'the deleted patron\'s household is as the library system left it');
		},
	},
	# --- supervisors ----------------------------------------------------------
	{
		name => 'set_limits, clear_limits, override_limits (supervisor)',
		who => 'supervisor_role',
		sql => "SELECT patron_group.set_limits($group_L, max_items_out => 50);\n"
		  . "SELECT patron_group.clear_limits($group_L);\n"
		  . "SELECT patron_group.set_limits(NULL, max_balance_owed => 100000, max_items_out => 1000, "
		  . "max_items_overdue => 1000, max_items_lost => 1000);\n"
		  . "BEGIN;\nSELECT patron_group.override_limits('supervisor says so');\nROLLBACK;",
		covers => [ 'set_limits(bigint,numeric,bigint,bigint,bigint)', 'clear_limits(bigint)', 'override_limits(text)' ],
	},
	# --- the catalogue, acting for L --------------------------------------------
	{
		name => 'opac reads every table of the library system acting for L, children and partitions too',
		who => 'opac',
		sql => as_lead(join("\n", map { "SELECT * FROM ils.$_;" } @tables)),
		covers => [ 'act_as(bigint)', 'visible_patrons(text)' ],
	},
	{
		name => 'current_patron, visible_patrons, group_members, payment_plan, set_consent as the lead',
		who => 'opac',
		sql => as_lead("SELECT patron_group.current_patron();\n"
			  . "SELECT patron_group.visible_patrons('circulations');\n"
			  . "SELECT patron_group.visible_patrons('bills');\n"
			  . "SELECT * FROM patron_group.group_members($L);\n"
			  . "SELECT * FROM patron_group.payment_plan($L, 1.00);\n"
			  . "SELECT patron_group.set_consent($L, 'bills', true, reason => 'my choice');\n"
			  . "SELECT patron_group.normalize_barcode(' c1 ');"),
		covers => [
			'current_patron()', 'visible_patrons(text)', 'group_members(bigint)',
			'consent_in_force(boolean,timestamp with time zone)',
			'payment_plan(bigint,numeric,bigint)', 'set_consent(bigint,text,boolean,timestamp with time zone,text)',
			'normalize_barcode(text)'
		],
	},
	{
		name => 'act_as_token with the token in the query text (refused)',
		who => 'opac',
		sql => "SELECT patron_group.act_as_token('$token');",
		covers => ['act_as_token(text)'],
		expect => qr/^(?:28000|0A000)$/,    # refused in the query text; or withdrawn
		if_exists => 'act_as_token(',
	},
	{
		name => 'token_nonce and act_as_proof',
		who => 'opac',
		sql => $proof_sql,
		covers => [ 'token_nonce(*)', 'act_as_proof(*)' ],
		if_exists => 'act_as_proof(',
		check => sub {
			my ($out) = @_;
			like($out, qr/^acting\|$L$/m, 'act_as_proof: the catalogue acts for L');
		},
	},
	{
		name => 'issue_token',
		who => 'signer',
		sql => "SELECT patron_group.issue_token($L, '10 minutes');",
		covers => ['issue_token(bigint,interval)'],
	},
	# --- the DBA's group operations: the planted code must see ils_owner ------
	{
		name => 'the DBA: move_to_group',
		who => 'dba',
		sql => "SELECT patron_group.move_to_group(500010, 500011, 'DBA');",
		covers => [ 'move_to_group(bigint,bigint,text)', 'accounts_trigger()' ],
		fires => ['trigger:patron:BEFORE ROW UPDATE'],
		check => sub { is(household(500010), household(500011), 'the DBA\'s move_to_group: the household followed'); },
	},
	{
		name => 'the DBA: set_lead',
		who => 'dba',
		sql => "SELECT patron_group.set_lead(500011, true, 'DBA');",
		covers => ['set_lead(bigint,boolean,text)'],
		fires => ['domain:patron.is_lead'],
		check => sub { is(lead_flag(500011), 't', 'the DBA\'s set_lead: the lead column followed'); },
	},
	{
		name => 'the DBA: remove_from_group',
		who => 'dba',
		sql => "SELECT patron_group.remove_from_group(500010, 'DBA');",
		covers => ['remove_from_group(bigint,text)'],
		fires => ['default:patron.household'],
		check => sub {
			is(household(500010), last_household(), 'the DBA\'s remove_from_group: the household column got its default');
		},
	},
	{
		name => 'the DBA: clone_patron',
		who => 'dba',
		sql => "SELECT patron_group.clone_patron(500011, "
		  . q{'{"id": 500081, "given_name": "Liv", "barcode": "C81"}'} . ", 'DBA');",
		covers => ['clone_patron(bigint,jsonb,text)'],
		fires => [ 'trigger:patron:BEFORE ROW INSERT', 'trigger:patron:BEFORE ROW UPDATE' ],
		check => sub { is(household(500081), household(500011), 'the DBA\'s clone_patron: the clone joined the household'); },
	},
	# --- the DBA's maintenance ---------------------------------------------------
	{
		name => 'verify, rebuild, health',
		who => 'dba',
		sql => "SELECT * FROM patron_group.verify();\nSELECT patron_group.rebuild();\n"
		  . "SELECT patron_group.rebuild(ARRAY[$L, $M1]::bigint[]);\nSELECT * FROM patron_group.health();\n"
		  . "SELECT * FROM patron_group.attachment_status;",
		covers => [ 'verify()', 'rebuild(bigint[])', 'health()', 'expected_triggers()',
			'ils_rows(oid,bigint[],bigint[])' ],
	},
	{
		name => 'set_limits, clear_limits, enforce_limits off and on',
		who => 'dba',
		sql => "SELECT patron_group.set_limits($group_L, max_items_out => 500);\n"
		  . "SELECT patron_group.clear_limits($group_L);\n"
		  . "SELECT patron_group.enforce_limits('ils.circulation', false);\n"
		  . "SELECT patron_group.enforce_limits('ils.circulation', true);",
		covers => [ 'set_limits(bigint,numeric,bigint,bigint,bigint)', 'clear_limits(bigint)', 'enforce_limits(regclass,boolean)' ],
	},
	{
		name => 'grant_staff, revoke_staff, staff_privileges, revoke_supervisor, grant_supervisor',
		who => 'dba',
		sql => "SELECT patron_group.grant_staff('signer');\nSELECT patron_group.revoke_staff('signer');\n"
		  . "SELECT patron_group.staff_privileges('signer', true);\n"
		  . "SELECT patron_group.staff_privileges('signer', false);\n"
		  . "SELECT patron_group.revoke_supervisor('supervisor_role');\n"
		  . "SELECT patron_group.grant_supervisor('supervisor_role');",
		covers => [
			'grant_staff(regrole)', 'revoke_staff(regrole)', 'staff_privileges(regrole,boolean)',
			'grant_supervisor(*)', 'revoke_supervisor(*)', 'supervisor_privileges(*)'
		],
	},
	{
		name => 'unregister_patron_facing and register_patron_facing, unprotect and protect',
		who => 'dba',
		sql => "SELECT patron_group.unregister_patron_facing('opac');\n"
		  . "SELECT patron_group.register_patron_facing('opac');\n"
		  . "SELECT patron_group.unprotect('ils.circulation');\nSELECT patron_group.protect('ils.circulation');",
		covers => [
			'unregister_patron_facing(regrole)', 'register_patron_facing(regrole)',
			'unprotect(regclass)', 'protect(regclass)'
		],
	},
	{
		name => 'exposed_to_patron_facing',
		who => 'dba',
		sql => "SELECT * FROM patron_group.exposed_to_patron_facing();",
		covers => ['exposed_to_patron_facing(*)'],
		if_exists => 'exposed_to_patron_facing(',
	},
	{
		name => 'rotate_token_secret',
		who => 'dba',
		sql => "SELECT patron_group.rotate_token_secret();",
		covers => ['rotate_token_secret()'],
	},
	{
		name => 'the history refuses DELETE and TRUNCATE',
		who => 'dba',
		sql => "DELETE FROM patron_group.history WHERE event_id OPERATOR(pg_catalog.=) 1;\n"
		  . "TRUNCATE patron_group.history;",
		covers => ['history_guard()'],
		expect => '42501,42501',
	},
	{
		name => 'DROP EXTENSION while tables are attached',
		who => 'dba',
		sql => "DROP EXTENSION patron_group;",
		covers => ['drop_guard()'],
		expect => '2BP01',
	},
	{
		name => 'an attachment of an older version restored (its mapping view is made from its text)',
		who => 'dba',
		sql => "SELECT patron_group.detach('ils.card');\n"
		  . "INSERT INTO patron_group.attachments (relid, kind, patron_column, barcode_column, condition) "
		  . "VALUES ('ils.card', 'cards', 'patron', 'barcode', 'active');\n"
		  . "SELECT patron_group.detach('ils.card');\n"
		  . "SELECT patron_group.attach_cards('ils.card', 'patron', 'barcode', active_when => 'active');\n"
		  . "SELECT patron_group.protect('ils.card');",
		covers => [ 'attachments_restore()', 'detach(regclass)', 'attach_cards(*)', 'protect(regclass)' ],
	},
	{
		name => 'alter_attachment, and direct writes to attachments',
		who => 'dba',
		sql => "SELECT patron_group.alter_attachment('ils.circulation', open_when => 'checkin_at IS NULL AND true');\n"
		  . "SELECT patron_group.alter_attachment('ils.billing', via => 'ils.transaction', via_id_column => 'id', "
		  . "via_patron_column => 'patron', counts_when => 'NOT voided');\n"
		  . "UPDATE patron_group.attachments SET attached_by = attached_by WHERE relid = 'ils.billing'::regclass;\n"
		  . "UPDATE patron_group.attachments SET condition = 'true' WHERE relid = 'ils.circulation'::regclass;",
		covers => [ 'alter_attachment(*)', 'attachments_changed()', 'attachments_old_columns()' ],
		expect => '0A000',
	},
	{
		name => 'detach and attach money again',
		who => 'dba',
		sql => "SELECT patron_group.detach('ils.payment');\n"
		  . "SELECT patron_group.attach_money('ils.payment', 'payment', 'amount', 'xact', "
		  . "via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron', counts_when => 'NOT voided');\n"
		  . "SELECT patron_group.protect('ils.payment');",
		covers => [ 'detach(regclass)', 'attach_money(*)', 'protect(regclass)' ],
	},
	# --- the library system's owner changes its schema ------------------------------
	{
		name => 'a child table made under a protected table (the DDL trigger protects it)',
		who => 'ils_owner',
		sql => "CREATE TABLE ils.sweep_payment () INHERITS (ils.payment);\n"
		  . "INSERT INTO ils.sweep_payment (xact, amount) VALUES (110, 0.05);\n"
		  . "DROP TABLE ils.sweep_payment;",
		covers => ['ddl_watch()'],
	},
	{
		name => 'a table above the transaction tree (a statement on it recounts its rows\' patrons)',
		who => 'ils_owner',
		sql => "CREATE TABLE ils.any_xact (id bigint, patron bigint);\n"
		  . "ALTER TABLE ils.transaction INHERIT ils.any_xact;\n"
		  . "UPDATE ils.any_xact SET patron = patron WHERE id IN (110, 170);\n"
		  . "DELETE FROM ils.any_xact WHERE false;\n"
		  . "ALTER TABLE ils.transaction NO INHERIT ils.any_xact;\nDROP TABLE ils.any_xact;",
		covers => [ 'within_trigger()', 'ddl_watch()' ],
	},
	# --- detach everything, attach it all again, households imported again ----------
	{
		name => 'detach_all',
		who => 'dba',
		sql => "SELECT patron_group.detach_all();",
		covers => [ 'detach_all()', 'detach(regclass)', 'unprotect(regclass)' ],
	},
	{
		name => 'attach everything again, with the households, and protect it',
		who => 'dba',
		sql => "SELECT patron_group.attach_patrons('ils.patron', 'id', name_columns => '{family_name,given_name}', "
		  . "clone_columns => '{family_name,street,city,phone}', deleted_when => 'deleted', "
		  . "group_column => 'household', lead_column => 'is_lead');\n"
		  . "SELECT patron_group.attach_cards('ils.card', 'patron', 'barcode', active_when => 'active');\n"
		  . "SELECT patron_group.attach_circulations('ils.circulation', 'patron', 'due_at', "
		  . "open_when => 'checkin_at IS NULL', lost_when => 'stop_fines = ''LOST''');\n"
		  . join('',
			map {
				"SELECT patron_group.attach_money('ils.$_->[0]', '$_->[1]', 'amount', 'xact', "
				  . "via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron', "
				  . "counts_when => 'NOT voided');\n"
			} ([ 'billing', 'charge' ], [ 'payment', 'payment' ]))
		  . "SELECT patron_group.protect(t) FROM unnest('{ils.patron,ils.card,ils.circulation,ils.billing,ils.payment}'::regclass[]) t;\n"
		  . "SELECT patron_group.enforce_limits('ils.circulation', true);",
		covers => [ 'attach_patrons(*)', 'attach_cards(*)', 'attach_circulations(*)', 'attach_money(*)', 'protect(regclass)' ],
		check => sub {
			is(households_disagree(), '', 'attached again: the groups are the households again');
		},
	},
	{
		name => 'move_to_group after attaching again (household written back)',
		who => 'staff',
		sql => "SELECT patron_group.move_to_group(500009, $L, 'after attaching again');",
		covers => ['move_to_group(bigint,bigint,text)'],
		fires => ['trigger:patron:BEFORE ROW UPDATE'],
		check => sub { is(household(500009), household($L), 'after attaching again, the household followed the move'); },
	},
	{
		name => 'checkout and payment after attaching again',
		who => 'staff',
		sql => "INSERT INTO ils.circulation (patron, item, due_at) VALUES (500009, 'again', '2031-11-01');\n"
		  . "INSERT INTO ils.cash_payment (xact, amount, drawer) VALUES (110, 0.10, 4);",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'verify at the end',
		who => 'dba',
		sql => "SELECT 'differences|' || count(*) FROM patron_group.verify();\n"
		  . "SELECT * FROM patron_group.verify();",
		covers => ['verify()'],
		check => sub {
			my ($out) = @_;
			like($out, qr/^differences\|0$/m, 'at the end verify() returns no rows') or diag($out);
		},
	},
);

# --- the sweep: every function of the extension has an operation -----------
{
	my %covered;
	foreach my $op (@operations)
	{
		$covered{$_} = 1 foreach @{ $op->{covers} };
	}
	foreach my $f (@ext_functions)
	{
		(my $short = $f) =~ s/^patron_group\.//;
		(my $name = $short) =~ s/\(.*//;
		ok($covered{$short} || $covered{"$name(*)"}, "sweep: $f has an operation")
		  or diag("no operation exercises $f; add one to \@operations of 031_hostile_library.pl");
	}
}

# --- run them -----------------------------------------------------------------
# Evidence rows are judged in two classes: what runs when a statement
# executes (triggers, defaults, CHECKs, domains, rules, generated columns,
# index expressions, policies) and what the planner folds when it plans a
# query on the table ("plan:..."), a read included.  A row is wrong when it
# ran as neither ils_owner nor the caller (the caller is no superuser; the
# DBA is no allowed caller).  A row as ils_owner after ils_owner was made a
# superuser in the same operation follows from a wrong row, and (a) reports
# the escalation itself.
my $seen = sql1("SELECT coalesce(max(id), 0) FROM evidence.log");
my %fired_overall;    # object => 1, during the operations
my @findings;
my $n = 0;
foreach my $op (@operations)
{
	next if $op->{if_exists} && !has_function($op->{if_exists});
	$n++;
	my $role = $op->{who} eq 'dba' ? $dba : $op->{who};
	my @allowed = ('ils_owner', $op->{who} eq 'dba' || $op->{who} eq 'ils_owner' ? () : ($role));
	my $allowed_text = join(' or ', @allowed);
	my $label = "op $n, $op->{name} (as $op->{who})";
	my ($out, $err) = psql_as($role, "SET hostile.op = 'op $n';\n$op->{sql}");
	my $expect = $op->{expect} // '';
	ok( ref($expect) ? sqlstates($err) =~ $expect : sqlstates($err) eq $expect,
		"$label: ends " . ($expect ne '' ? "with $expect" : 'without error'))
	  or diag("SQLSTATEs: " . sqlstates($err) . "\n$err");

	my $allowed_sql = 'ARRAY[' . join(', ', map { "'$_'" } @allowed) . ']::name[]';
	my $bad_sql = sub {
		my ($class) = @_;
		return qq{
(SELECT coalesce(string_agg(format('as %s%s%s: %s', ran_as,
                                   CASE WHEN ran_as_super THEN ' (a superuser)' ELSE '' END,
                                   CASE WHEN escalated THEN ' (ALTER ROLE ils_owner SUPERUSER succeeded)' ELSE '' END,
                                   objects), '; ' ORDER BY ran_as), '')
   FROM (SELECT ran_as, ran_as_super, escalated,
                string_agg(format('%s x%s', fired, n), ', ' ORDER BY fired) AS objects
           FROM (SELECT ran_as, ran_as_super, escalated, fired, count(*) AS n FROM evidence.log
                  WHERE id > $seen AND ran_as <> ALL ($allowed_sql)
                    AND (fired LIKE 'plan:%') = $class
                  GROUP BY 1, 2, 3, 4) b
          GROUP BY 1, 2, 3) bad)};
	};
	my $state = sql1(qq{
SELECT ($role_state_sql), ($member_sql), } . $bad_sql->('false') . ', ' . $bad_sql->('true') . qq{,
       (SELECT coalesce(string_agg(DISTINCT fired, ','), '') FROM evidence.log WHERE id > $seen),
       (SELECT coalesce(max(id), $seen) FROM evidence.log)});
	my ($roles, $members, $bad_exec, $bad_plan, $fired, $max_id) = split(/\|/, $state, -1);
	$seen = $max_id;
	my %fired_here = map { $_ => 1 } split(/,/, $fired);
	$fired_overall{$_} = 1 foreach keys %fired_here;

	# (a) the roles
	my $gained = '';
	$gained .= 'roles now: ' . join(' ', grep { /=t/ } split(/ /, $roles)) if $roles ne $baseline_roles;
	$gained .= " new memberships: $members" if $members ne $baseline_members;
	ok($gained eq '', "$label: no watched role gained an attribute or a membership")
	  or diag("$label: $gained");
	reset_roles() if $roles ne $baseline_roles || $members ne $baseline_members;

	# the statements that ran a payload as someone not allowed: the
	# innermost statement of each warning's context that is not the
	# payload's own
	my %allowed = map { $_ => 1 } @allowed;
	my %stmts;
	foreach my $w (split(/WARNING:/, $err))
	{
		next unless $w =~ /EVIDENCE fired=.*? ran_as=(\S+)/ && !$allowed{$1};
		foreach my $st ($w =~ /SQL statement "(.*?)"\n/g)
		{
			next if $st =~ /ils\.payload|ALTER ROLE|evidence\.log/;
			$stmts{ length($st) > 200 ? substr($st, 0, 200) . '...' : $st } = 1;
			last;
		}
	}
	my $statements = %stmts ? "\n    statements: " . join(' || ', sort keys %stmts) : '';
	# payloads that ran as a superuser in a transaction later rolled back
	# leave no row, only their warning; so does a payload whose row could
	# not be written
	my (%lost_exec, %lost_plan);
	foreach my $w ($err =~ /(EVIDENCE(?:-LOST)? fired=[^\n]*)/g)
	{
		my ($what, $as) = $w =~ /fired=(.*?) ran_as=(\S+?):?\s/;
		next if $w !~ /EVIDENCE-LOST/ && ($allowed{ $as // '' } || $bad_exec ne '' || $bad_plan ne '');
		(($what // '') =~ /^plan:/ ? $lost_plan{$w} : $lost_exec{$w}) = 1;
	}
	my $lost = %lost_exec ? ' warnings: ' . join('; ', sort keys %lost_exec) : '';
	my $lost_p = %lost_plan ? ' warnings: ' . join('; ', sort keys %lost_plan) : '';

	# (b) as whom ils_owner's code ran
	ok($bad_exec eq '' && $lost eq '',
		"$label: ils_owner's triggers, defaults, CHECKs, domains, rules, generated columns, index expressions and policies ran only as $allowed_text"
	) or diag("$label: ils_owner's code ran $bad_exec $lost$statements");
	ok($bad_plan eq '' && $lost_p eq '',
		"$label: what the planner folds of ils_owner's (statistics and index expressions, index predicates, CHECKs) ran only as $allowed_text"
	) or diag("$label: the planner folded ils_owner's code $bad_plan$lost_p$statements");
	push @findings, "$label:" . ($gained ne '' ? "\n    $gained" : '')
	  . ($bad_exec ne '' || $lost ne '' ? "\n    executor: $bad_exec$lost" : '')
	  . ($bad_plan ne '' || $lost_p ne '' ? "\n    planner: $bad_plan$lost_p" : '')
	  . $statements
	  if $gained ne '' || $bad_exec ne '' || $lost ne '' || $bad_plan ne '' || $lost_p ne '';

	# (c) the extension's own statement on the library system ran
	foreach my $must (@{ $op->{fires} // [] })
	{
		ok($fired_here{$must}, "$label: the extension's statement on the library system ran ($must fired)")
		  or diag("$label: fired only: $fired");
	}
	$op->{check}->($out, $err) if $op->{check};
	# what the checks' own reads (as ils_owner) ran is no operation's
	$seen = sql1("SELECT coalesce(max(id), 0) FROM evidence.log");
}

# --- every planted object fired, as someone, during the operations ----------
{
	my @expected;
	foreach my $t (@tables)
	{
		foreach my $w (qw(BEFORE AFTER))
		{
			foreach my $l (qw(ROW STATEMENT))
			{
				# a partitioned table's row triggers fire on its partitions, which they name
				next if $l eq 'ROW' && $t eq 'circulation';
				push @expected, "trigger:$t:$w $l $_" foreach qw(INSERT UPDATE DELETE);
			}
		}
		push @expected, "check:$t", "policy:$t:using", "policy:$t:check";
		push @expected, "rule:$t:$_" foreach qw(INSERT UPDATE DELETE);
		push @expected, "generated:$t" if $root{$t};
		push @expected, "index:$t" unless $t =~ /^circulation_/;
	}
	foreach my $t (@tables)
	{
		push @expected, "plan:statistics:$t";
		push @expected, "plan:index:$t", "plan:partial index:$t" unless $t =~ /^circulation_/;
	}
	push @expected, map { "domain:$_" }
	  qw(patron.is_lead card.barcode circulation.stop_fines billing.amount payment.voided transaction.kind);
	push @expected, map { "default:$_" }
	  qw(patron.household patron.is_lead patron.deleted card.active circulation.checkin_at billing.voided
	  payment.voided cash_payment.voided);
	my @missing = grep { !$fired_overall{$_} } @expected;
	is(join(', ', @missing), '', 'every object ils_owner planted fired during the operations');
}

# --- the end state ---------------------------------------------------------------
is(households_disagree(), '', 'at the end the households agree with the groups, member for member and lead for lead');

diag(@findings
	? scalar(@findings) . " of $n operations ran ils_owner's code with rights it does not have:\n  "
	  . join("\n  ", @findings)
	: "none of the $n operations ran ils_owner's code as anyone but ils_owner or the caller");
diag(sprintf('031_hostile_library.pl took %.1f s', time - $started));

$node->stop('fast');
done_testing();
