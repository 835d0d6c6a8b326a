# Security regression tests: attacks on patron_group, each run as a real SQL
# session by the role that would mount it, asserting the secure outcome.
#
#   1  search_path escalation through every path that runs as the extension
#      owner, in two hostile environments (pg_temp types planted by the
#      caller; operators and functions planted by the owner of the library
#      system's schema), with a sweep of pg_proc so that no function of the
#      extension goes unexercised
#   2  a token never travels, and a proof that is seen is worth nothing:
#      act_as_token() is withdrawn whatever way it is called; a proof sent
#      as a literal works once in its own transaction, and another session
#      that reads it in pg_stat_activity cannot act with it
#   3  the transaction table of money attached "via" is protected too
#   4  consent that expires during a transaction stops showing at once
#   5  inheritance children and partitions are protected, also new ones
#   6  limits are set by supervisors only, and every change is in the history
#   7  a lead sees whole patron rows of no one but themselves
#   8  EXPLAIN ANALYZE is no oracle for a patron-facing role
#   9  no WITH HOLD cursor over a protected table
#  10  the asserted patron follows savepoints
#  11  move_to_group() of a huge array ends quickly
#  12  DROP SCHEMA patron_group CASCADE is refused while tables are attached
#  13  exactly seven functions are granted to PUBLIC, and the README says so
#
# After every attack: no watched role (ils_owner, staff, opac, signer) has
# gained SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, none has
# a new role membership, and no payload recorded that it ran as a superuser.
# The fixture is test/t/attacks/fixture.sql; ils_owner's operators and
# functions are test/t/attacks/ils_owner_trojans.sql.

use strict;
use warnings;

use FindBin;
use IPC::Run;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time usleep);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $here = $FindBin::RealBin;
my $fixture_dir = "$here/attacks";

my $node = PostgreSQL::Test::Cluster->new('attacks');
$node->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
$node->start;

my $dba = $node->safe_psql('postgres', 'SELECT current_user');
my @watched = qw(ils_owner staff opac signer);
my $watched_list = join(', ', map { "'$_'" } @watched);

# Patrons of the fixture: L leads; M1 shares circulations and bills; M2, an
# adult, shares nothing; O is in no group.  All ids lie above 300000.
my ($L, $M1, $M2, $O) = (500001, 500002, 500003, 500004);

$node->safe_psql(
	'postgres', q{
CREATE ROLE ils_owner LOGIN;        -- owns the library system's schema and tables
CREATE ROLE staff LOGIN;            -- the circulation desk
CREATE ROLE opac LOGIN;             -- the catalogue, patron-facing
CREATE ROLE signer LOGIN;           -- the service that signs patrons in
CREATE ROLE supervisor_role LOGIN;  -- may change the group limits (attack 6)
});

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# Connection string for a database as a role (the bootstrap superuser when
# no role is given).
sub connstr_as
{
	my ($db, $role) = @_;
	my $c = $node->connstr($db);
	$c .= " user=$role" if defined $role && $role ne $dba;
	return $c;
}

# Run SQL as a role in a new session; errors do not stop the script.
# Returns (stdout, stderr); errors carry their SQLSTATE (VERBOSITY verbose).
sub psql_as
{
	my ($db, $role, $sql, %opts) = @_;
	my ($ret, $out, $err) = $node->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		connstr => connstr_as($db, $role),
		on_error_stop => 0,
		%opts);
	return ($out // '', $err // '');
}

# The SQLSTATEs of the errors in a psql stderr, comma-separated.
sub sqlstates
{
	my ($err) = @_;
	return join(',', $err =~ /ERROR:\s+([0-9A-Z]{5}):/g);
}

# The value a script printed as SELECT 'name|' || value, so that one script
# can print several results.
sub marked
{
	my ($out, $name) = @_;
	return $out =~ /^\Q$name\E\|(.*)$/m ? $1 : undef;
}

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

# Put the watched roles back as they were, so that each attack is judged on
# its own.
sub reset_roles
{
	my $sql = join('',
		map { "ALTER ROLE $_ NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;\n" }
		  @watched);
	if ($baseline_members eq '')
	{
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
	}
	$node->safe_psql('postgres', $sql);
	return;
}

# Evidence rows already judged, per database.
my %evidence_seen;

# Assert that nothing escalated: the watched roles as at the start, no new
# role membership, no evidence row written by a payload running as a
# superuser since the last check in this database, and no such payload's
# warning in the session's stderr.  Restores the roles if something did.
# Returns a description of the escalation, or '' when there was none.
sub check_no_escalation
{
	my ($db, $label, $stderr) = @_;
	$stderr //= '';
	my $seen = $evidence_seen{$db} // 0;
	my $state = $node->safe_psql(
		$db, qq{
SELECT ($role_state_sql), ($member_sql),
       (SELECT coalesce(string_agg(DISTINCT format('%s payload ran as %s in a session of %s',
                                                   log, ran_as, session_role), '; '), '')
          FROM evidence.all_rows WHERE ran_as_super AND id > $seen),
       (SELECT coalesce(max(id), 0) FROM evidence.all_rows)});
	my ($roles, $members, $rows, $max_id) = split(/\|/, $state, -1);
	$evidence_seen{$db} = $max_id if $max_id > $seen;
	my @warnings =
	  ($stderr =~ /EVIDENCE (planted_by=\S+ ran_as=\S+ super=t)/g);
	my %uniq = map { $_ => 1 } @warnings;

	my @what;
	push @what, "roles now: $roles" if $roles ne $baseline_roles;
	push @what, "new memberships: $members" if $members ne $baseline_members;
	push @what, "evidence rows: $rows" if $rows ne '';
	push @what, 'payload warnings: ' . join('; ', sort keys %uniq) if %uniq;
	# the statements that ran the payload (CONTEXT of its warnings), for whoever fixes it
	my %stmts;
	foreach my $w (split(/WARNING:/, $stderr))
	{
		next unless $w =~ /EVIDENCE planted_by=\S+ ran_as=\S+ super=t/;
		foreach my $st ($w =~ /SQL statement "(.*?)"\n/g)
		{
			next if $st =~ /evil\(\)/;
			$stmts{ length($st) > 240 ? substr($st, 0, 240) . '...' : $st } = 1;
		}
	}
	push @what, 'run by: ' . join(' || ', sort keys %stmts) if %stmts;
	my $escalated = join(' / ', @what);
	ok($escalated eq '', "$label: no escalation")
	  or diag("$label ESCALATED: $escalated");
	reset_roles() if $roles ne $baseline_roles || $members ne $baseline_members;
	return $escalated;
}

# ---------------------------------------------------------------------------
# The fixture, in a template every attack copies
# ---------------------------------------------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE tpl');
$node->safe_psql('tpl', slurp_file("$fixture_dir/fixture.sql"));
# a token for L, signed while the fixture is built (the secret is copied with
# the template)
my $token = $node->safe_psql('tpl',
	"SET ROLE signer; SELECT patron_group.issue_token($L, '2 hours')");
like($token, qr/^pg1\.$L\.\d+\.[0-9a-f]{64}$/, 'signer issues a token for L');
my ($token_hex) = $token =~ /\.([0-9a-f]{64})$/;
my ($token_expires) = $token =~ /^pg1\.\d+\.(\d+)\./;

# the copies; a database in use cannot serve as a template
sub copy_db
{
	my ($name) = @_;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$name" TEMPLATE tpl});
	return $name;
}

# The functions of the extension, from pg_proc and pg_depend.
my @ext_functions = split(
	/\n/,
	$node->safe_psql(
		'tpl', q{
SELECT p.oid::regprocedure::text
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'patron_group')
   AND d.deptype = 'e'
 ORDER BY 1}));
my %ext_function = map { $_ => 1 } @ext_functions;
ok(scalar(@ext_functions) > 30, 'the extension\'s functions are listed from pg_proc');

# ===========================================================================
# Attack 1: search_path escalation through every path that runs as the
# extension owner
# ===========================================================================

# The payload of a caller who may only create temporary objects: pg_temp is
# searched first for types, so domains named like pg_catalog's types, whose
# CHECK runs pg_temp.evil(), catch any code that names a type unqualified.
# evil() tries to make the attacker a superuser and records as whom it ran.
sub pg_temp_payload
{
	my ($attacker, $log) = @_;
	return qq{
CREATE FUNCTION pg_temp.evil() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS \$evil\$
DECLARE
    s boolean;
BEGIN
    BEGIN
        EXECUTE 'ALTER ROLE $attacker SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    SELECT r.rolsuper INTO s FROM pg_catalog.pg_roles r
     WHERE r.rolname OPERATOR(pg_catalog.=) current_user;
    BEGIN
        INSERT INTO evidence.$log (planted_by, ran_as, ran_as_super)
        VALUES ('$attacker', current_user, s);
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    IF s THEN
        RAISE WARNING 'EVIDENCE planted_by=% ran_as=% super=%', '$attacker', current_user, s;
    END IF;
    RETURN true;
END
\$evil\$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.int4 AS pg_catalog.int4 CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.int8 AS pg_catalog.int8 CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.numeric AS pg_catalog.numeric CHECK (pg_temp.evil());
CREATE DOMAIN pg_temp.bool AS pg_catalog.bool CHECK (pg_temp.evil());
};
}

# The hostile environments.  'dml' is who runs the library system's
# statements: staff (with no more than TEMP) in A, ils_owner in B.
my @environments = (
	{
		key => 'A',
		db => 'env_a',
		desc => 'pg_temp types planted by the caller (default search_path)',
		dml => 'staff',
		temp => 1,
		path => undef,
	},
	{
		key => 'B1',
		db => 'env_b1',
		desc => 'ils_owner\'s operators and functions, search_path = ils, pg_catalog',
		dml => 'ils_owner',
		temp => 0,
		path => 'ils, pg_catalog',
	},
	{
		key => 'B2',
		db => 'env_b2',
		desc =>
		  'ils_owner\'s operators and functions and pg_temp types, search_path = pg_temp, ils, pg_catalog',
		dml => 'ils_owner',
		temp => 1,
		path => 'pg_temp, ils, pg_catalog',
	});

# The session prelude of a role in an environment.
sub hostile_prelude
{
	my ($env, $role) = @_;
	my $sql = '';
	if ($env->{temp})
	{
		my $is_dba = $role eq $dba;
		# a DBA session's pg_temp payload stands for one planted against it
		$sql .= pg_temp_payload($is_dba ? 'staff' : $role,
			$is_dba ? 'log_dba' : "log_$role");
	}
	$sql .= "SET search_path = $env->{path};\n" if defined $env->{path};
	return $sql;
}

# Acting for L, as the catalogue does, in one transaction.
sub as_lead
{
	my ($sql) = @_;
	return "BEGIN;\nSELECT patron_group.act_as($L);\n$sql\nCOMMIT;\n";
}

# Every operation, in the order run.  who: dml (the library system's own
# statements, see above), staff, opac, signer, dba (the superuser DBA, with
# the hostile search_path) or clean (the DBA restoring rows, no payload; not
# an attack).  covers: the extension's functions the operation runs
# (trigger functions through the statements that fire them); the sweep
# below requires every function of the extension to be covered.  The DBA's
# statements use no unqualified operator or function that ils_owner
# shadows, so that whatever runs ils_owner's code as the DBA is the
# extension.
my @operations = (
	# --- the library system's statements: loans ---------------------------
	{
		name => 'checkout with limits enforced (INSERT INTO ils.loan)',
		who => 'dml',
		sql => "INSERT INTO ils.loan (patron, title, due) VALUES ($L, 'checkout', '2031-01-01');",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'checkout for several patrons in one statement',
		who => 'dml',
		sql => "INSERT INTO ils.loan (patron, title, due) VALUES ($M1, 'checkout 2', '2031-01-01'), "
		  . "($O, 'checkout 3', '2031-01-01'), (500006, 'checkout 4', '2031-01-01');",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'renewal (UPDATE ils.loan)',
		who => 'dml',
		sql => "UPDATE ils.loan SET due = '2031-02-01' WHERE title = 'checkout';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'check-in',
		who => 'dml',
		sql => "UPDATE ils.loan SET returned = '2026-01-01' WHERE title = 'L book 1';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan marked lost',
		who => 'dml',
		sql => "UPDATE ils.loan SET stop_fines = 'LOST' WHERE title = 'M2 book 1';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan moved to another patron',
		who => 'dml',
		sql => "UPDATE ils.loan SET patron = 500006 WHERE title = 'M2 book 2';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'loan deleted',
		who => 'dml',
		sql => "DELETE FROM ils.loan WHERE title = 'S book';",
		covers => ['totals_trigger()'],
	},
	# --- the partitioned loans table and its partition ----------------------
	{
		name => 'ILL loans inserted (partitioned), one for a patron not yet registered',
		who => 'dml',
		sql => "INSERT INTO ils.ill_loan (patron, lender, due) VALUES ($L, 'County', '2031-01-01'), "
		  . "(500060, 'County', '2031-01-02');",
		covers => ['totals_trigger()'],
	},
	{
		name => 'ILL loan marked lost',
		who => 'dml',
		sql => "UPDATE ils.ill_loan SET stop_fines = 'LOST' WHERE patron = $M2;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'ILL loan deleted',
		who => 'dml',
		sql => "DELETE FROM ils.ill_loan WHERE patron = $O;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'ILL partition: INSERT, UPDATE, DELETE directly',
		who => 'dml',
		sql => "INSERT INTO ils.ill_loan_2020s (patron, lender, due) VALUES ($M1, 'Direct', '2031-03-01');\n"
		  . "UPDATE ils.ill_loan_2020s SET returned = '2026-01-01' WHERE lender = 'Direct';\n"
		  . "DELETE FROM ils.ill_loan_2020s WHERE lender = 'Direct';",
		covers => [],
	},
	# --- patrons -----------------------------------------------------------
	{
		name => 'patrons registered, one whose ILL loan arrived first',
		who => 'dml',
		sql => "INSERT INTO ils.patron (id, family_name, given_name) VALUES "
		  . "(500050, 'New', 'Patron'), (500060, 'Late', 'Registrant');",
		covers => [ 'patrons_trigger()', 'accounts_trigger()' ],
	},
	{
		name => 'patron renamed',
		who => 'dml',
		sql => "UPDATE ils.patron SET given_name = 'Maria José' WHERE id = $L;",
		covers => ['patrons_trigger()'],
	},
	{
		name => 'grouped patron\'s id changed (loans and transactions follow by ON UPDATE CASCADE)',
		who => 'dml',
		sql => "UPDATE ils.patron SET id = 500075 WHERE id = 500005;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()', 'via_trigger()' ],
	},
	{
		name => 'patron deleted',
		who => 'dml',
		sql => "DELETE FROM ils.patron WHERE id = 500050;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()' ],
	},
	{
		name => 'grouped patron deleted with loans, transactions and bills (ON DELETE CASCADE)',
		who => 'dml',
		sql => "DELETE FROM ils.patron WHERE id = 500075;",
		covers => [ 'patrons_trigger()', 'accounts_trigger()', 'via_trigger()', 'totals_trigger()' ],
	},
	# --- bills and payments (via the transaction table) ---------------------
	{
		name => 'bill inserted',
		who => 'dml',
		sql => "INSERT INTO ils.bill (xact, amount, note) VALUES (110, 2.25, 'new fine');",
		covers => ['totals_trigger()'],
	},
	{
		name => 'bill voided',
		who => 'dml',
		sql => "UPDATE ils.bill SET voided = true WHERE note = 'L fine';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'bill deleted',
		who => 'dml',
		sql => "DELETE FROM ils.bill WHERE note = 'S fine';",
		covers => ['totals_trigger()'],
	},
	{
		name => 'payment inserted into the parent',
		who => 'dml',
		sql => "INSERT INTO ils.payment (xact, amount) VALUES (110, 0.25);",
		covers => ['totals_trigger()'],
	},
	{
		name => 'payments voided through the parent (children\'s rows too)',
		who => 'dml',
		sql => "UPDATE ils.payment SET voided = true WHERE xact = 140;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'payment deleted from the parent',
		who => 'dml',
		sql => "DELETE FROM ils.payment WHERE xact = 110 AND amount = 0.25;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'cash payment (child): INSERT, UPDATE, DELETE',
		who => 'dml',
		sql => "INSERT INTO ils.cash_payment (xact, amount, cash_drawer) VALUES (120, 0.75, 3);\n"
		  . "UPDATE ils.cash_payment SET voided = true WHERE cash_drawer = 3;\n"
		  . "DELETE FROM ils.cash_payment WHERE cash_drawer = 3;",
		covers => [],
	},
	{
		name => 'card payment (child): INSERT, UPDATE, DELETE',
		who => 'dml',
		sql => "INSERT INTO ils.card_payment (xact, amount, cc_last4) VALUES (111, 0.60, '9999');\n"
		  . "UPDATE ils.card_payment SET voided = true WHERE cc_last4 = '9999';\n"
		  . "DELETE FROM ils.card_payment WHERE cc_last4 = '9999';",
		covers => [],
	},
	# --- the transaction table ---------------------------------------------
	{
		name => 'UPDATE ils.xact SET patron = patron',
		who => 'dml',
		sql => "UPDATE ils.xact SET patron = patron;",
		covers => ['via_trigger()'],
	},
	{
		name => 'transaction reassigned to another patron',
		who => 'dml',
		sql => "UPDATE ils.xact SET patron = $O WHERE id = 160;",
		covers => ['via_trigger()'],
	},
	{
		name => 'transaction inserted',
		who => 'dml',
		sql => "INSERT INTO ils.xact (id, patron) VALUES (170, $O);",
		covers => [],
	},
	{
		name => 'transaction deleted (its bills cascade)',
		who => 'dml',
		sql => "DELETE FROM ils.xact WHERE id = 121;",
		covers => [ 'via_trigger()', 'totals_trigger()' ],
	},
	# --- staff's functions ---------------------------------------------------
	{
		name => 'resolve_barcode',
		who => 'staff',
		sql => "SELECT patron_group.resolve_barcode('C1');",
		covers => ['resolve_barcode(text)'],
	},
	{
		name => 'find_patron',
		who => 'staff',
		sql => "SELECT * FROM patron_group.find_patron(' c2 ');",
		covers => ['find_patron(text)'],
	},
	{
		name => 'normalize_barcode (staff)',
		who => 'staff',
		sql => "SELECT patron_group.normalize_barcode(' c1 ');",
		covers => ['normalize_barcode(text)'],
	},
	{
		name => 'move_to_group of one patron',
		who => 'staff',
		sql => "SELECT patron_group.move_to_group(500006, $L, 'moved in');",
		covers => [ 'move_to_group(bigint,bigint,text)', 'accounts_trigger()', 'sequence_catch_up()' ],
	},
	{
		name => 'remove_from_group',
		who => 'staff',
		sql => "SELECT patron_group.remove_from_group(500006, 'moved out');",
		covers => [ 'remove_from_group(bigint,text)', 'accounts_trigger()' ],
	},
	{
		name => 'move_to_group of several patrons into a new group',
		who => 'staff',
		sql => "SELECT patron_group.move_to_group(ARRAY[$O, 500006]::bigint[], 500007, 'new household');",
		covers => [ 'move_to_group(bigint[],bigint,text)', 'accounts_trigger()', 'sequence_catch_up()' ],
	},
	{
		name => 'clone_patron',
		who => 'staff',
		sql => "SELECT patron_group.clone_patron($L, "
		  . q{'{"id": 500080, "given_name": "Lucas", "barcode": "C80"}'} . ", 'save and clone');",
		covers => [ 'clone_patron(bigint,jsonb,text)', 'patrons_trigger()', 'accounts_trigger()', 'balance_from_totals()' ],
	},
	{
		name => 'set_lead',
		who => 'staff',
		sql => "SELECT patron_group.set_lead($M1, true, 'co-lead');\nSELECT patron_group.set_lead($M1, false);",
		covers => ['set_lead(bigint,boolean,text)'],
	},
	{
		name => 'set_group_label',
		who => 'staff',
		sql => "SELECT patron_group.set_group_label(1, 'Alvarez family', 'asked at the desk');",
		covers => ['set_group_label(bigint,text,text)'],
	},
	{
		name => 'group_members (staff)',
		who => 'staff',
		sql => "SELECT * FROM patron_group.group_members($L);",
		covers => [ 'group_members(bigint)', 'consent_in_force(boolean,timestamp with time zone)' ],
	},
	{
		name => 'set_consent (staff)',
		who => 'staff',
		sql => "SELECT patron_group.set_consent($M2, 'bills', true, reason => 'asked');\n"
		  . "SELECT patron_group.set_consent($M2, 'bills', false);",
		covers => ['set_consent(bigint,text,boolean,timestamp with time zone,text)'],
	},
	{
		name => 'patron_details and the reporting views',
		who => 'staff',
		sql => "SELECT * FROM patron_group.patron_details($L);\n"
		  . "SELECT * FROM patron_group.group_summary;\nSELECT * FROM patron_group.member_summary;\n"
		  . "SELECT * FROM patron_group.membership_history;\nSELECT * FROM patron_group.attachment_status;",
		covers => ['patron_details(bigint)'],
	},
	{
		name => 'health (staff)',
		who => 'staff',
		sql => "SELECT * FROM patron_group.health();",
		covers => [ 'health()', 'verify()', 'expected_triggers()', 'direct_refusal()' ],
	},
	{
		name => 'checkout_allowed',
		who => 'staff',
		sql => "SELECT * FROM patron_group.checkout_allowed($L);",
		covers => ['checkout_allowed(bigint)'],
	},
	{
		name => 'payment_plan (staff)',
		who => 'staff',
		sql => "SELECT * FROM patron_group.payment_plan($L, 5.00);",
		covers => ['payment_plan(bigint,numeric,bigint)'],
	},
	{
		name => 'override_limits and a checkout under it',
		who => 'staff',
		sql => "BEGIN;\nSELECT patron_group.override_limits('emergency');\n"
		  . "INSERT INTO ils.loan (patron, title, due) VALUES ($M1, 'override', '2031-01-01');\nCOMMIT;",
		covers => [ 'override_limits(text)', 'limits_trigger()', 'totals_trigger()' ],
	},
	# --- the catalogue, acting for L -----------------------------------------
	{
		name => 'opac reads every protected table acting for L',
		who => 'opac',
		sql => as_lead(
			    "SELECT * FROM ils.patron;\nSELECT * FROM ils.card;\nSELECT * FROM ils.loan;\n"
			  . "SELECT * FROM ils.ill_loan;\nSELECT * FROM ils.bill;\nSELECT * FROM ils.payment;\n"
			  . "SELECT * FROM ils.cash_payment;\nSELECT * FROM ils.xact;"),
		covers => [ 'act_as(bigint)', 'visible_patrons(text)' ],
	},
	{
		name => 'current_patron and visible_patrons',
		who => 'opac',
		sql => as_lead("SELECT patron_group.current_patron();\n"
			  . "SELECT patron_group.visible_patrons('circulations');\n"
			  . "SELECT patron_group.visible_patrons('bills');"),
		covers => [ 'current_patron()', 'visible_patrons(text)' ],
	},
	{
		name => 'group_members as the lead',
		who => 'opac',
		sql => as_lead("SELECT * FROM patron_group.group_members($L);"),
		covers => [ 'group_members(bigint)', 'consent_in_force(boolean,timestamp with time zone)' ],
	},
	{
		name => 'payment_plan as the lead',
		who => 'opac',
		sql => as_lead("SELECT * FROM patron_group.payment_plan($L, 1.00);"),
		covers => ['payment_plan(bigint,numeric,bigint)'],
	},
	{
		name => 'set_consent as oneself',
		who => 'opac',
		sql => as_lead("SELECT patron_group.set_consent($L, 'bills', true, reason => 'my choice');"),
		covers => ['set_consent(bigint,text,boolean,timestamp with time zone,text)'],
	},
	{
		name => 'normalize_barcode (opac)',
		who => 'opac',
		sql => "SELECT patron_group.normalize_barcode(' c1 ');",
		covers => ['normalize_barcode(text)'],
	},
	{
		name => 'act_as_token (withdrawn)',
		who => 'opac',
		sql => "BEGIN;\nSELECT patron_group.act_as_token('$token');\nCOMMIT;",
		covers => ['act_as_token(text)'],
	},
	{
		name => 'token_nonce and act_as_proof',
		who => 'opac',
		sql => "BEGIN;\nSELECT patron_group.token_nonce() AS nonce \\gset\n"
		  . "\\set proof `printf '%s' :'nonce' | openssl dgst -sha256 -hmac '$token' -r | cut -c1-64`\n"
		  . "SELECT patron_group.act_as_proof($L, $token_expires, :'proof');\nSELECT * FROM ils.loan;\nCOMMIT;",
		covers => [ 'token_nonce()', 'act_as_proof(bigint,bigint,text)' ],
	},
	{
		name => 'exposed_to_patron_facing',
		who => 'dba',
		sql => "SELECT * FROM patron_group.exposed_to_patron_facing();",
		covers => ['exposed_to_patron_facing()'],
	},
	{
		name => 'issue_token',
		who => 'signer',
		sql => "SELECT patron_group.issue_token($L, '10 minutes');",
		covers => ['issue_token(bigint,interval)'],
	},
	# --- the DBA's functions -------------------------------------------------
	{
		name => 'verify',
		who => 'dba',
		sql => "SELECT * FROM patron_group.verify();",
		covers => [ 'verify()', 'ils_rows(oid,bigint[],bigint[])' ],
	},
	{
		name => 'rebuild',
		who => 'dba',
		sql => "SELECT patron_group.rebuild();\nSELECT patron_group.rebuild(ARRAY[$L, $M1]::bigint[]);",
		covers => ['rebuild(bigint[])'],
	},
	{
		name => 'health (DBA)',
		who => 'dba',
		sql => "SELECT * FROM patron_group.health();",
		covers => [ 'health()', 'verify()', 'expected_triggers()' ],
	},
	{
		name => 'set_limits',
		who => 'dba',
		sql => "SELECT patron_group.set_limits(1, max_items_out => 500);\n"
		  . "SELECT patron_group.set_limits(NULL, max_balance_owed => 100000, max_items_out => 1000, "
		  . "max_items_overdue => 1000, max_items_lost => 1000);",
		covers => ['set_limits(bigint,numeric,bigint,bigint,bigint)'],
	},
	{
		name => 'clear_limits',
		who => 'dba',
		sql => "SELECT patron_group.clear_limits(1);",
		covers => ['clear_limits(bigint)'],
	},
	{
		name => 'enforce_limits off and on',
		who => 'dba',
		sql => "SELECT patron_group.enforce_limits('ils.loan', false);\n"
		  . "SELECT patron_group.enforce_limits('ils.loan', true);",
		covers => ['enforce_limits(regclass,boolean)'],
	},
	{
		name => 'grant_staff and revoke_staff',
		who => 'dba',
		sql => "SELECT patron_group.grant_staff('signer');\nSELECT patron_group.revoke_staff('signer');",
		covers => [ 'grant_staff(regrole)', 'revoke_staff(regrole)', 'staff_privileges(regrole,boolean)' ],
	},
	{
		name => 'staff_privileges',
		who => 'dba',
		sql => "SELECT patron_group.staff_privileges('signer', true);\n"
		  . "SELECT patron_group.staff_privileges('signer', false);",
		covers => ['staff_privileges(regrole,boolean)'],
	},
	{
		name => 'grant_supervisor and revoke_supervisor',
		who => 'dba',
		sql => "SELECT patron_group.grant_supervisor('supervisor_role');\n"
		  . "SELECT patron_group.revoke_supervisor('supervisor_role');",
		covers => [ 'grant_supervisor(*)', 'revoke_supervisor(*)', 'supervisor_privileges(regrole,boolean)' ],
		if_exists => 'patron_group.grant_supervisor(',
	},
	{
		name => 'unregister_patron_facing and register_patron_facing',
		who => 'dba',
		sql => "SELECT patron_group.unregister_patron_facing('opac');\n"
		  . "SELECT patron_group.register_patron_facing('opac');",
		covers => [ 'unregister_patron_facing(regrole)', 'register_patron_facing(regrole)' ],
	},
	{
		name => 'unprotect and protect',
		who => 'dba',
		sql => "SELECT patron_group.unprotect('ils.ill_loan');\nSELECT patron_group.protect('ils.ill_loan');",
		covers => [ 'unprotect(regclass)', 'protect(regclass)' ],
	},
	{
		name => 'a child table created under a protected table (the DDL trigger protects it)',
		who => 'dba',
		sql => "CREATE TABLE ils.sweep_payment () INHERITS (ils.payment);\n"
		  . "DROP TABLE ils.sweep_payment;",
		covers => ['ddl_watch()'],
	},
	{
		name => 'a statement on a table above the transaction tree (its rows\' patrons are recounted)',
		who => 'dba',
		sql => "CREATE TABLE ils.any_xact (id bigint, patron bigint);\n"
		  . "ALTER TABLE ils.xact INHERIT ils.any_xact;\n"
		  . "UPDATE ils.any_xact SET patron = patron;\nDELETE FROM ils.any_xact WHERE false;\n"
		  . "ALTER TABLE ils.xact NO INHERIT ils.any_xact;\nDROP TABLE ils.any_xact;",
		covers => [ 'within_trigger()', 'ddl_watch()' ],
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
		covers => ['attachments_restore()'],
	},
	{
		name => 'alter_attachment of a condition and of a via mapping, and a direct write to attachments',
		who => 'dba',
		sql => "SELECT patron_group.alter_attachment('ils.ill_loan', open_when => 'returned IS NULL AND true');\n"
		  . "SELECT patron_group.alter_attachment('ils.bill', via => 'ils.xact', via_id_column => 'id', "
		  . "via_patron_column => 'patron', counts_when => 'NOT voided');\n"
		  . "UPDATE patron_group.attachments SET attached_by = attached_by WHERE false;\n"
		  . "UPDATE patron_group.attachments SET condition = 'true' WHERE relid = 'ils.loan'::regclass;",
		covers => [
			'alter_attachment(regclass,name,name,name[],name[],text,name,text,text,name,text,regclass,name,name,text,text,text,text,text[],name)',
			'attachments_changed()', 'attachments_old_columns()'
		],
		if_exists => 'patron_group.alter_attachment(',
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
	},
	{
		name => 'DROP EXTENSION while tables are attached',
		who => 'dba',
		sql => "DROP EXTENSION patron_group;",
		covers => ['drop_guard()'],
	},
	# --- TRUNCATE of every attached table and child --------------------------
	{
		name => 'TRUNCATE card payments (child)',
		who => 'dml',
		sql => "TRUNCATE ils.card_payment;",
		covers => [],
	},
	{
		name => 'TRUNCATE cash payments (child)',
		who => 'dml',
		sql => "TRUNCATE ils.cash_payment;",
		covers => [],
	},
	{
		name => 'TRUNCATE the ILL partition',
		who => 'dml',
		sql => "TRUNCATE ils.ill_loan_2020s;",
		covers => [],
	},
	{
		name => 'TRUNCATE payments (parent)',
		who => 'dml',
		sql => "TRUNCATE ils.payment;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'TRUNCATE bills',
		who => 'dml',
		sql => "TRUNCATE ils.bill;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'TRUNCATE loans',
		who => 'dml',
		sql => "TRUNCATE ils.loan;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'TRUNCATE ILL loans (partitioned)',
		who => 'dml',
		sql => "TRUNCATE ils.ill_loan;",
		covers => ['totals_trigger()'],
	},
	{
		name => 'TRUNCATE transactions (CASCADE)',
		who => 'dml',
		sql => "TRUNCATE ils.xact CASCADE;",
		covers => ['via_trigger()'],
	},
	{
		name => 'TRUNCATE patrons (CASCADE)',
		who => 'dml',
		sql => "TRUNCATE ils.patron CASCADE;",
		covers => ['patrons_trigger()'],
	},
	# --- detach everything, attach it all again ------------------------------
	{
		name => 'detach_all',
		who => 'dba',
		sql => "SELECT patron_group.detach_all();",
		covers => [ 'detach_all()', 'detach(regclass)', 'unprotect(regclass)' ],
	},
	{
		name => 'the library system reloads some rows',
		who => 'clean',
		sql => qq{
INSERT INTO ils.patron (id, family_name, given_name) VALUES ($L, 'Alvarez', 'Maria'),
    ($M1, 'Alvarez', 'Sofia'), ($M2, 'Alvarez', 'Tomás');
INSERT INTO ils.card (patron, barcode) VALUES ($L, 'C1'), ($M1, 'C2'), ($M2, 'C3');
INSERT INTO ils.loan (patron, title, due, stop_fines) VALUES ($L, 'again', '2031-01-01', NULL),
    ($M1, 'again lost', '2025-01-01', 'LOST');
INSERT INTO ils.ill_loan (patron, lender, due, stop_fines) VALUES ($M2, 'County', '2031-01-01', 'LOST');
INSERT INTO ils.xact (id, patron) VALUES (210, $L), (220, $M1);
INSERT INTO ils.bill (xact, amount) VALUES (210, 1.00), (220, 2.00);
INSERT INTO ils.cash_payment (xact, amount) VALUES (210, 0.50);
},
		covers => [],
	},
	{
		name => 'attach_patrons',
		who => 'dba',
		sql => "SELECT patron_group.attach_patrons('ils.patron', 'id', "
		  . "name_columns => '{family_name,given_name}', clone_columns => '{family_name,street,city,phone}');",
		covers => [ 'attach_patrons(regclass,name,name,name[],name[],text,name,name)', 'accounts_trigger()' ],
	},
	{
		name => 'attach_cards',
		who => 'dba',
		sql => "SELECT patron_group.attach_cards('ils.card', 'patron', 'barcode', active_when => 'active');",
		covers => ['attach_cards(regclass,name,name,text,name,name)'],
	},
	{
		name => 'attach_circulations',
		who => 'dba',
		sql => "SELECT patron_group.attach_circulations('ils.loan', 'patron', 'due', "
		  . "open_when => 'returned IS NULL', lost_when => 'stop_fines = ''LOST''');\n"
		  . "SELECT patron_group.attach_circulations('ils.ill_loan', 'patron', 'due', "
		  . "open_when => 'returned IS NULL', lost_when => 'stop_fines = ''LOST''');",
		covers => ['attach_circulations(regclass,name,name,text,text,text,text,text,text[])'],
	},
	{
		name => 'attach_money',
		who => 'dba',
		sql => join(
			"\n",
			map {
				"SELECT patron_group.attach_money('ils.$_->[0]', '$_->[1]', 'amount', 'xact', "
				  . "via => 'ils.xact', via_id_column => 'id', via_patron_column => 'patron', "
				  . "counts_when => 'NOT voided');"
			} ([ 'bill', 'charge' ], [ 'payment', 'payment' ])),
		covers => ['attach_money(regclass,text,name,name,regclass,name,name,text,name)'],
	},
	{
		name => 'protect after attaching again',
		who => 'dba',
		sql => "SELECT patron_group.protect('ils.loan');\nSELECT patron_group.protect('ils.bill');\n"
		  . "SELECT patron_group.protect('ils.payment');",
		covers => ['protect(regclass)'],
	},
	{
		name => 'enforce_limits after attaching again',
		who => 'dba',
		sql => "SELECT patron_group.enforce_limits('ils.loan', true);",
		covers => ['enforce_limits(regclass,boolean)'],
	},
	{
		name => 'checkout after attaching again',
		who => 'dml',
		sql => "INSERT INTO ils.loan (patron, title, due) VALUES ($M1, 'checkout again', '2031-01-01');",
		covers => [ 'totals_trigger()', 'limits_trigger()' ],
	},
	{
		name => 'detach',
		who => 'dba',
		sql => "SELECT patron_group.detach('ils.payment');",
		covers => ['detach(regclass)'],
	},
);

# --- the sweep: every function of the extension has an operation ---------
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
		ok( $covered{$short} || $covered{"$name(*)"},
			"attack 1 sweep: $f is exercised in every hostile environment")
		  or diag("attack 1: no operation exercises $f; add one to \@operations");
	}
}

# --- run every operation in every environment -----------------------------
my %escalations;    # environment key => [ operation names ]
foreach my $env (@environments)
{
	my $db = copy_db($env->{db});
	if ($env->{key} =~ /^B/)
	{
		$node->safe_psql($db, slurp_file("$fixture_dir/ils_owner_trojans.sql"),
			connstr => connstr_as($db, 'ils_owner'));
	}
	# nothing escalated while the environment was prepared
	check_no_escalation($db, "attack 1 [$env->{key}] setup");

	foreach my $op (@operations)
	{
		next
		  if $op->{if_exists}
		  && !grep { index($_, $op->{if_exists}) == 0 } @ext_functions;
		my $role =
		    $op->{who} eq 'dml' ? $env->{dml}
		  : $op->{who} eq 'dba' || $op->{who} eq 'clean' ? $dba
		  : $op->{who};
		my $sql =
		  $op->{who} eq 'clean'
		  ? $op->{sql}
		  : "\\set SHOW_CONTEXT always\n" . hostile_prelude($env, $role) . $op->{sql};
		my ($out, $err) = psql_as($db, $role, $sql);
		my $errors = sqlstates($err);
		note("[$env->{key}] $op->{name} as $role: " . ($errors eq '' ? 'no error' : "errors $errors"));
		my $what = check_no_escalation($db,
			"attack 1 [$env->{key}: $env->{desc}] $op->{name} (as $role)", $err);
		push @{ $escalations{ $env->{key} } }, $op->{name} if $what ne '';
	}
}
foreach my $env (@environments)
{
	my $list = $escalations{ $env->{key} } // [];
	diag("attack 1 [$env->{key}: $env->{desc}]: "
		  . (@$list ? scalar(@$list) . ' operations escalated to superuser: ' . join('; ', @$list)
			: 'no escalation'));
}

# ===========================================================================
# The other attacks run on their own copies of the fixture
# ===========================================================================

my $main = copy_db('main');
my ($out, $err);

# ===========================================================================
# Attack 2: a token never travels; a proof that is seen is worth nothing
# ===========================================================================

{
	# the token itself: refused however it is sent
	my @token_paths = (
		[ 'a literal in SELECT', "SELECT patron_group.act_as_token('$token'), patron_group.current_patron();" ],
		[   'a literal through PREPARE and EXECUTE',
			"PREPARE p(text) AS SELECT patron_group.act_as_token(\$1), patron_group.current_patron();\n"
			  . "EXECUTE p('$token');"
		],
		[   'a literal in a DO block',
			"DO \$\$ BEGIN PERFORM patron_group.act_as_token('$token'); "
			  . "RAISE NOTICE 'acting for %', patron_group.current_patron(); END \$\$;"
		],
		[   'a literal split in two',
			"SELECT patron_group.act_as_token('" . substr($token, 0, 40) . "' || '" . substr($token, 40) . "');"
		]);
	foreach my $case (@token_paths)
	{
		my ($name, $sql) = @$case;
		($out, $err) = psql_as($main, 'opac',
			"$sql\nSELECT 'after|' || coalesce(patron_group.current_patron()::text, 'NULL');");
		is(sqlstates($err), '0A000', "attack 2: act_as_token with $name is refused with 0A000");
		like($err, qr/act_as_proof/, "attack 2: the refusal of $name names act_as_proof()");
		my $acting = $out . join("\n", grep { /acting for/ } split(/\n/, $err));
		unlike($acting, qr/\b$L\b/, "attack 2: with $name the session never acts for L");
		is(marked($out, 'after'), 'NULL', "attack 2: with $name current_patron() stays NULL");
	}

	# The catalogue pastes its proof into the query text, as psycopg2 does,
	# and stays idle in its transaction; another session of the same role
	# reads the proof in pg_stat_activity and tries it, before and after the
	# catalogue's transaction ends, with and without a nonce of its own.
	my $victim = $node->background_psql($main, on_error_stop => 0, extra_params => [ '-U', 'opac' ]);
	my $thief = $node->background_psql($main, on_error_stop => 0, extra_params => [ '-U', 'opac' ]);
	my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
	$victim->query_safe('BEGIN');
	my $nonce = $victim->query_safe('SELECT patron_group.token_nonce()');
	like($nonce, qr/^[0-9a-f]{32}$/, 'attack 2: a nonce is 32 hex digits');
	my $proof = hmac_sha256_hex($nonce, $token);
	is($victim->query_safe("SELECT patron_group.act_as_proof($L, $token_expires, '$proof')"),
		$L, 'attack 2: the proof, sent as a literal, acts for L in its own transaction');
	my $seen = $thief->query_safe(
		"SELECT query FROM pg_stat_activity WHERE pid = $victim_pid");
	like($seen, qr/\Q$proof\E/, 'attack 2: the proof is in pg_stat_activity for the other session to read');
	unlike($seen, qr/\Q$token_hex\E/, 'attack 2: the token is not');
	my ($patron, $expires, $stolen) =
	  $seen =~ /act_as_proof\((\d+), (\d+), '([0-9a-f]{64})'\)/;
	is($stolen, $proof, 'attack 2: the other session extracts the proof');
	my @replays = (
		[ 'without a nonce', "SELECT patron_group.act_as_proof($patron, $expires, '$stolen');", 'no patron_group nonce' ],
		[   'with a nonce of its own',
			"BEGIN;\nSELECT patron_group.token_nonce() IS NOT NULL;\n"
			  . "SELECT patron_group.act_as_proof($patron, $expires, '$stolen');\nROLLBACK;",
			'invalid patron token proof'
		]);
	foreach my $when ('while the catalogue is idle in its transaction', 'after it ended')
	{
		$victim->query_safe('COMMIT') if $when eq 'after it ended';
		foreach my $r (@replays)
		{
			my ($how, $sql, $msg) = @$r;
			$thief->{stderr} = '';
			my $o = $thief->query($sql . "\nSELECT 'after|' || coalesce(patron_group.current_patron()::text, 'NULL');");
			like($thief->{stderr}, qr/\Q$msg\E/, "attack 2: the stolen proof is refused $how, $when");
			unlike($o, qr/\b$L\b/, "attack 2: the other session never acts for L ($how, $when)");
		}
	}
	# the catalogue's own connection: its next transaction acts for nobody,
	# and its spent proof does not bring L back
	$victim->{stderr} = '';
	my $o = $victim->query("SELECT patron_group.act_as_proof($L, $token_expires, '$proof');\n"
		  . "SELECT 'after|' || coalesce(patron_group.current_patron()::text, 'NULL');");
	like($victim->{stderr}, qr/no patron_group nonce/, 'attack 2: a proof is not used twice on its own connection');
	is(marked($o, 'after'), 'NULL', 'attack 2: the next transaction acts for nobody');
	$victim->quit;
	$thief->quit;
	check_no_escalation($main, 'after attack 2');
}

# ===========================================================================
# Attack 3: the transaction table of money attached via it is protected
# ===========================================================================

{
	my $db = copy_db('xact');
	is( $node->safe_psql(
			$db, q{SELECT c.relrowsecurity, (SELECT count(*) > 0 FROM pg_policy p
			                                  WHERE p.polrelid = c.oid AND p.polname LIKE 'patron\_group\_%')
			         FROM pg_class c WHERE c.oid = 'ils.xact'::regclass}),
		't|t',
		'attack 3: after protect() of the bills, ils.xact has row-level security and patron_group policies');
	($out, $err) = psql_as($db, 'opac', "SELECT 'n|' || count(*) FROM ils.xact;");
	is(marked($out, 'n'), '0', 'attack 3: opac acting for nobody reads no transaction');
	($out, $err) = psql_as($db, 'opac',
		as_lead("SELECT 'ids|' || coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ils.xact;"));
	is(marked($out, 'ids'), '110,111,120,121',
		'attack 3: opac acting for L reads L\'s transactions and those of M1, who shares bills');
	($out, $err) = psql_as($db, 'opac',
		as_lead("WITH u AS (UPDATE ils.xact SET patron = $L WHERE patron = $M2 RETURNING id) "
			  . "SELECT 'updated|' || count(*) FROM u;"));
	ok( sqlstates($err) =~ /42501/ || (defined marked($out, 'updated') && marked($out, 'updated') eq '0'),
		'attack 3: opac cannot move M2\'s transaction to L (0 rows or 42501)')
	  or diag("stdout: $out\nstderr: $err");
	is($node->safe_psql($db, 'SELECT patron FROM ils.xact WHERE id = 130'),
		$M2, 'attack 3: M2\'s transaction still names M2');
	($out, $err) = psql_as($db, 'opac',
		as_lead("SELECT 'n|' || count(*) FROM ils.bill WHERE note = 'M2 fine';"));
	is(marked($out, 'n'), '0', 'attack 3: M2\'s bill stays invisible to L');
	check_no_escalation($db, 'after attack 3');
}

# ===========================================================================
# Attack 5: inheritance children and partitions are protected
# ===========================================================================

{
	my $db = copy_db('children');
	my $policy_names = q{(SELECT coalesce(string_agg(polname, ',' ORDER BY polname), '')
	                        FROM pg_policy WHERE polrelid = '%s'::regclass AND polname LIKE 'patron\_group\_%%')};
	my %parent_of = (
		'ils.cash_payment' => 'ils.payment',
		'ils.card_payment' => 'ils.payment',
		'ils.ill_loan_2020s' => 'ils.ill_loan');

	my $check_child = sub {
		my ($child, $parent, $what) = @_;
		my ($rls, $mine, $theirs) = split(
			/\|/,
			$node->safe_psql(
				$db,
				sprintf(
					"SELECT (SELECT relrowsecurity FROM pg_class WHERE oid = '%s'::regclass), $policy_names, $policy_names",
					$child, $child, $parent)),
			-1);
		is($rls, 't', "attack 5: $what $child has row-level security");
		ok($mine ne '' && $mine eq $theirs,
			"attack 5: $what $child has the patron_group policies of $parent")
		  or diag("$child: '$mine'; $parent: '$theirs'");
		($out, $err) = psql_as($db, 'opac', "SELECT 'n|' || count(*) FROM $child;");
		is(marked($out, 'n'), '0', "attack 5: opac acting for nobody reads nothing of $what $child");
	};
	foreach my $child (sort keys %parent_of)
	{
		$check_child->($child, $parent_of{$child}, 'the child');
	}
	($out, $err) = psql_as(
		$db, 'opac',
		as_lead(
			    "SELECT 'cash|' || coalesce(string_agg(DISTINCT xact::text, ','), '') FROM ils.cash_payment;\n"
			  . "SELECT 'card|' || coalesce(string_agg(DISTINCT xact::text, ','), '') FROM ils.card_payment;\n"
			  . "SELECT 'ill|' || coalesce(string_agg(DISTINCT patron::text, ','), '') FROM ils.ill_loan_2020s;"
		));
	is(marked($out, 'cash'), '120',
		'attack 5: acting for L, the cash payments child shows only M1\'s (shared) payment');
	is(marked($out, 'card'), '111', 'attack 5: acting for L, the card payments child shows only L\'s');
	is(marked($out, 'ill'), "$L,$M1",
		'attack 5: acting for L, the partition shows only L\'s and M1\'s (shared) loans');

	# children made after protect()
	$node->safe_psql(
		$db, qq{
CREATE TABLE ils.gift_payment () INHERITS (ils.payment);
INSERT INTO ils.gift_payment (xact, amount) VALUES (130, 5.00), (110, 1.00);
CREATE TABLE ils.ill_loan_2040s PARTITION OF ils.ill_loan FOR VALUES FROM ('2040-01-01') TO ('2060-01-01');
INSERT INTO ils.ill_loan_2040s (patron, lender, due) VALUES ($M2, 'Future', '2041-01-01');
CREATE TABLE ils.ill_loan_old (LIKE ils.ill_loan INCLUDING DEFAULTS);
INSERT INTO ils.ill_loan_old (patron, lender, due, returned) VALUES ($M2, 'Past', '2010-01-01', '2010-02-01');
ALTER TABLE ils.ill_loan ATTACH PARTITION ils.ill_loan_old FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
GRANT SELECT ON ils.gift_payment, ils.ill_loan_2040s, ils.ill_loan_old TO opac;
},
		connstr => connstr_as($db, 'ils_owner'));
	$check_child->('ils.gift_payment', 'ils.payment', 'the new inheritance child');
	$check_child->('ils.ill_loan_2040s', 'ils.ill_loan', 'the new partition');
	$check_child->('ils.ill_loan_old', 'ils.ill_loan', 'the attached partition');
	check_no_escalation($db, 'after attack 5');
}

# ===========================================================================
# Attack 6: limits are for supervisors; every change is in the history
# ===========================================================================

{
	my $limits_sql = q{SELECT coalesce(string_agg(format('%s %s %s %s %s', group_id, max_balance_owed,
	                     max_items_out, max_items_overdue, max_items_lost), ';' ORDER BY group_id NULLS FIRST), '')
	                     FROM patron_group.limits};
	my $history_sql = q{SELECT count(*) FILTER (WHERE action = 'limits_set') || ' '
	                           || count(*) FILTER (WHERE action = 'limits_cleared')
	                      FROM patron_group.history};
	my $before = $node->safe_psql($main, $limits_sql);
	($out, $err) = psql_as($main, 'staff', 'SELECT patron_group.clear_limits(NULL);');
	is(sqlstates($err), '42501', 'attack 6: staff calling clear_limits(NULL) gets 42501');
	($out, $err) = psql_as($main, 'staff',
		'SELECT patron_group.set_limits(NULL, max_balance_owed => 0, max_items_out => 0);');
	is(sqlstates($err), '42501', 'attack 6: staff calling set_limits() gets 42501');
	($out, $err) = psql_as($main, 'staff', 'SELECT patron_group.set_limits(1, max_items_out => 0);');
	is(sqlstates($err), '42501', 'attack 6: staff calling set_limits() for a group gets 42501');
	is($node->safe_psql($main, $limits_sql), $before, 'attack 6: the limits did not change');

	($out, $err) = psql_as($main, $dba, q{SELECT patron_group.grant_supervisor('supervisor_role');});
	is(sqlstates($err), '', 'attack 6: the DBA grants supervisor_role with grant_supervisor()')
	  or diag($err);
	my $h0 = $node->safe_psql($main, $history_sql);
	($out, $err) = psql_as($main, 'supervisor_role',
		'SELECT patron_group.set_limits(1, max_items_out => 50);');
	is(sqlstates($err), '', 'attack 6: a supervisor may set a group\'s limits') or diag($err);
	my $h1 = $node->safe_psql($main, $history_sql);
	($out, $err) = psql_as($main, 'supervisor_role', 'SELECT patron_group.clear_limits(1);');
	is(sqlstates($err), '', 'attack 6: a supervisor may clear a group\'s limits') or diag($err);
	my $h2 = $node->safe_psql($main, $history_sql);
	($out, $err) = psql_as($main, 'supervisor_role',
		"SELECT patron_group.set_limits(NULL, max_balance_owed => 100000, max_items_out => 1000, "
		  . "max_items_overdue => 1000, max_items_lost => 1000);");
	is(sqlstates($err), '', 'attack 6: a supervisor may set the default limits') or diag($err);
	my $h3 = $node->safe_psql($main, $history_sql);
	($out, $err) = psql_as($main, 'supervisor_role',
		"BEGIN;\nSELECT patron_group.override_limits('supervisor says so');\nROLLBACK;");
	is(sqlstates($err), '', 'attack 6: a supervisor may override the limits') or diag($err);
	my ($s0, $c0) = split / /, $h0;
	my ($s1, $c1) = split / /, $h1;
	my ($s2, $c2) = split / /, $h2;
	my ($s3, $c3) = split / /, $h3;
	ok($s1 == $s0 + 1 && $c1 == $c0,
		'attack 6: set_limits() adds one history row with action limits_set')
	  or diag("history limits_set/limits_cleared: $h0 -> $h1");
	ok($s2 == $s1 && $c2 == $c1 + 1,
		'attack 6: clear_limits() adds one history row with action limits_cleared')
	  or diag("history limits_set/limits_cleared: $h1 -> $h2");
	ok($s3 == $s2 + 1 && $c3 == $c2,
		'attack 6: set_limits() of the default adds one history row with action limits_set')
	  or diag("history limits_set/limits_cleared: $h2 -> $h3");

	($out, $err) = psql_as($main, $dba, q{SELECT patron_group.revoke_supervisor('supervisor_role');});
	is(sqlstates($err), '', 'attack 6: the DBA revokes it with revoke_supervisor()') or diag($err);
	($out, $err) = psql_as($main, 'supervisor_role', 'SELECT patron_group.clear_limits(NULL);');
	is(sqlstates($err), '42501', 'attack 6: after revoke_supervisor() clear_limits() gets 42501');
	check_no_escalation($main, 'after attack 6');
}

# ===========================================================================
# Attack 7: whole patron rows
# ===========================================================================

{
	($out, $err) = psql_as(
		$main, 'opac',
		as_lead("SELECT 'ids|' || coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM ils.patron;\n"
			  . "SELECT 'cards|' || coalesce(string_agg(barcode, ',' ORDER BY barcode), '') FROM ils.card;"));
	is(marked($out, 'ids'), "$L", 'attack 7: opac acting for L: SELECT id FROM ils.patron returns only L');
	is(marked($out, 'cards'), 'C1,C1-OLD', 'attack 7: opac acting for L: SELECT * FROM ils.card returns only L\'s cards');
	($out, $err) = psql_as($main, 'opac',
		"SELECT 'n|' || (SELECT count(*) FROM ils.patron) || ',' || (SELECT count(*) FROM ils.card);");
	is(marked($out, 'n'), '0,0', 'attack 7: opac acting for nobody reads no patron and no card');
	check_no_escalation($main, 'after attack 7');
}

# ===========================================================================
# Attack 8: EXPLAIN ANALYZE is no oracle
# ===========================================================================

{
	# the refusal must not depend on the library being loaded before the
	# statement: each case runs in a new connection, and opac's settings
	# do not preload it (the policy's function loads it when the executor
	# starts the plan, before the plan runs)
	unlike($node->safe_psql($main, q{SELECT coalesce(array_to_string(rolconfig, ','), '') FROM pg_roles WHERE rolname = 'opac'}),
		qr/preload/, 'attack 8: opac does not preload the library');
	my $q = "SELECT * FROM ils.loan WHERE patron = $M2";
	my @cases = (
		[ 'EXPLAIN (ANALYZE)', "EXPLAIN (ANALYZE) $q;" ],
		[ 'EXPLAIN ANALYZE', "EXPLAIN ANALYZE $q;" ],
		[   'EXPLAIN ANALYZE in a DO block',
			"DO \$\$ BEGIN EXECUTE 'EXPLAIN ANALYZE $q'; END \$\$;"
		]);
	foreach my $case (@cases)
	{
		my ($name, $sql) = @$case;
		($out, $err) = psql_as($main, 'opac', $sql);
		is(sqlstates($err), '42501', "attack 8: $name of a protected table, no patron asserted: 42501");
		($out, $err) = psql_as($main, 'opac', as_lead($sql));
		like(sqlstates($err), qr/^42501/, "attack 8: $name of a protected table, acting for L: 42501");
	}
	($out, $err) = psql_as($main, 'opac', "EXPLAIN $q;");
	is(sqlstates($err), '', 'attack 8: plain EXPLAIN still works');
	like($out, qr/Scan/, 'attack 8: plain EXPLAIN shows a plan');
	check_no_escalation($main, 'after attack 8');
}

# ===========================================================================
# Attack 9: WITH HOLD cursors
# ===========================================================================

{
	($out, $err) = psql_as($main, 'opac',
		"BEGIN;\nDECLARE c CURSOR WITH HOLD FOR SELECT * FROM ils.loan;\nCOMMIT;\nFETCH ALL FROM c;");
	like(sqlstates($err), qr/^42501/, 'attack 9: DECLARE ... WITH HOLD over a protected table gets 42501');
	($out, $err) = psql_as($main, 'opac',
		as_lead("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM ils.loan;") . "FETCH ALL FROM c;");
	like(sqlstates($err), qr/^42501/,
		'attack 9: DECLARE ... WITH HOLD over a protected table, acting for L, gets 42501');
	check_no_escalation($main, 'after attack 9');
}

# ===========================================================================
# Attack 10: savepoints
# ===========================================================================

{
	($out, $err) = psql_as(
		$main, 'opac', qq{BEGIN;
SAVEPOINT s;
SELECT patron_group.act_as($L);
ROLLBACK TO SAVEPOINT s;
SELECT 'patron|' || coalesce(patron_group.current_patron()::text, 'NULL');
SELECT 'rows|' || (SELECT count(*) FROM ils.loan) || ',' || (SELECT count(*) FROM ils.bill)
       || ',' || (SELECT count(*) FROM ils.patron);
COMMIT;
});
	is(marked($out, 'patron'), 'NULL', 'attack 10: act_as() rolled back to a savepoint: current_patron() is NULL');
	is(marked($out, 'rows'), '0,0,0', 'attack 10: and the protected tables read no rows');
	($out, $err) = psql_as(
		$main, 'opac', qq{BEGIN;
SELECT patron_group.act_as($L);
SAVEPOINT s;
SELECT patron_group.act_as($M1);
ROLLBACK TO s;
SELECT 'patron|' || coalesce(patron_group.current_patron()::text, 'NULL');
COMMIT;
});
	is(marked($out, 'patron'), "$L", 'attack 10: act_as(M1) rolled back to a savepoint: acting for L again');
	check_no_escalation($main, 'after attack 10');
}

# ===========================================================================
# Attack 13: PUBLIC grants
# ===========================================================================

{
	my @public = split(
		/\n/,
		$node->safe_psql(
			$main, q{
SELECT p.oid::regprocedure::text
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'patron_group')
   AND d.deptype = 'e' AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'
 ORDER BY 1}));
	my @seven = (qw(patron_group.act_as_proof(bigint,bigint,text) patron_group.act_as_token(text)),
		'patron_group.consent_in_force(boolean,timestamp with time zone)',
		qw(patron_group.current_patron() patron_group.normalize_barcode(text) patron_group.token_nonce()
		  patron_group.visible_patrons(text)));
	is_deeply(\@public, \@seven,
		'attack 13: the functions PUBLIC may execute are exactly normalize_barcode, consent_in_force, current_patron, visible_patrons, token_nonce, act_as_proof and the withdrawn act_as_token'
	);

	# README.md: every sentence saying what is granted to PUBLIC names the same seven
	my $readme;
	foreach my $dir (grep { defined } ($ENV{TESTDIR}, "$here/../.."))
	{
		if (-f "$dir/README.md")
		{
			$readme = "$dir/README.md";
			last;
		}
	}
	ok(defined $readme, 'attack 13: README.md found') or diag("TESTDIR: " . ($ENV{TESTDIR} // 'unset'));
	my $text = defined $readme ? slurp_file($readme) : '';
	$text =~ s/```.*?```//gs;          # prose only
	$text =~ s/^#+ [^\n]*$//mg;         # no headings
	my @sentences;
	foreach my $para (split(/\n\s*\n/, $text))
	{
		$para =~ s/\s+/ /g;
		push @sentences, grep { /\bgrant(?:ed|s)?\b(?:\s+\S+){0,4}?\s+to\s+`?PUBLIC\b/i }
		  split(/(?<=[.!?])\s+(?=[A-Z`])/, $para);
	}
	my %ext_name = map { (my $n = $_) =~ s/^patron_group\.|\(.*//g; $n => 1 } @ext_functions;
	my ($naming_all, @wrong) = (0);
	foreach my $s (@sentences)
	{
		my %named = map { $_ => 1 } grep { $ext_name{$_} } ($s =~ /\b([a-z_]+)\s*\(/g);
		next unless %named;
		if (join(',', sort keys %named) eq 'act_as_proof,act_as_token,consent_in_force,current_patron,normalize_barcode,token_nonce,visible_patrons')
		{
			$naming_all++;
		}
		else
		{
			push @wrong, $s;
		}
	}
	ok($naming_all > 0, 'attack 13: README.md names the seven functions granted to PUBLIC')
	  or diag("sentences about PUBLIC grants:\n" . join("\n", @sentences));
	is(scalar(@wrong), 0, 'attack 13: no README.md sentence names another set of functions granted to PUBLIC')
	  or diag(join("\n", @wrong));
	check_no_escalation($main, 'after attack 13');
}

# ===========================================================================
# Attack 12: DROP SCHEMA patron_group CASCADE
# ===========================================================================

{
	my $db = copy_db('dropschema');
	my $inventory = q{SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'patron_group') || ' '
	    || (SELECT count(*) FROM pg_class WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'patron_group') AND relkind = 'r') || ' '
	    || (SELECT count(*) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
	         WHERE c.relnamespace = 'ils'::regnamespace AND p.polname LIKE 'patron\_group\_%')};
	my $before = $node->safe_psql($db, $inventory);
	($out, $err) = psql_as($db, $dba, 'DROP SCHEMA patron_group CASCADE;');
	is(sqlstates($err), '2BP01', 'attack 12: DROP SCHEMA patron_group CASCADE fails with 2BP01');
	is($node->safe_psql($db, $inventory), $before,
		'attack 12: the extension, its tables and the policies on the ILS tables are all still there');
	check_no_escalation($db, 'after attack 12');
}

# ===========================================================================
# Attack 4: consent that expires within a transaction
# ===========================================================================

{
	my $opac = $node->background_psql($main, on_error_stop => 0, extra_params => [ '-U', 'opac' ]);
	($out, $err) = psql_as($main, 'staff',
		"SELECT patron_group.set_consent($M1, 'circulations', true, "
		  . "until => clock_timestamp() + interval '2 seconds', reason => 'two seconds');");
	is(sqlstates($err), '', 'attack 4: staff records M1\'s consent until two seconds from now');
	$opac->{stderr} = '';
	$opac->query("BEGIN; SELECT patron_group.act_as($L);");
	my $before = $opac->query("SELECT count(*) FROM ils.loan WHERE patron = $M1");
	my $members_before = $opac->query(
		"SELECT items_out IS NOT NULL FROM patron_group.group_members($L) WHERE member_id = $M1");
	$opac->query('SELECT pg_sleep(3)');
	my $after = $opac->query("SELECT count(*) FROM ils.loan WHERE patron = $M1");
	my $members_after = $opac->query(
		"SELECT (items_out IS NULL AND items_overdue IS NULL AND items_lost IS NULL) "
		  . "FROM patron_group.group_members($L) WHERE member_id = $M1");
	$opac->query('COMMIT');
	my $opac_err = $opac->{stderr};
	$opac->quit;
	is($opac_err =~ s/\s+$//r, '', 'attack 4: the catalogue session ran without errors');
	ok($before > 0, 'attack 4: the first SELECT of the transaction sees M1\'s loans') or diag("saw $before");
	is($members_before, 't', 'attack 4: group_members() shows M1\'s figures while the consent lasts');
	is($after, '0', 'attack 4: after the consent expired, the next SELECT of the same transaction sees none of M1\'s loans');
	is($members_after, 't', 'attack 4: group_members() in that transaction shows M1\'s figures as hidden (NULL)');
	check_no_escalation($main, 'after attack 4');
}

# ===========================================================================
# Attack 11: quadratic input (last: a backend that ignores interrupts may
# outlive the test's patience)
# ===========================================================================

{
	my $timed_out = 0;
	my $t0 = time;
	($out, $err) = psql_as(
		$main, 'staff', "SET statement_timeout = '1s';\n"
		  . "SELECT patron_group.move_to_group(ARRAY(SELECT generate_series(1, 300000))::bigint[], $L);",
		timeout => 20,
		timed_out => \$timed_out);
	my $elapsed = time - $t0;
	ok(!$timed_out && $elapsed < 20, 'attack 11: move_to_group() of 300000 patrons ends within 20 seconds')
	  or diag(sprintf('still running after %.1f s', $elapsed));
	like(sqlstates($err), qr/^[0-9A-Z]{5}$/, 'attack 11: and ends with an error (57014 or another clean one)')
	  or diag("stderr: $err");
	diag(sprintf('attack 11: move_to_group() of 300000 patrons with statement_timeout 1s took %.1f s and ended with %s',
			$elapsed, $timed_out ? 'no answer (killed)' : sqlstates($err) || 'no error'));
	check_no_escalation($main, 'after attack 11');
	# a backend stuck in a loop without interrupt checks ignores a fast shutdown
	$node->stop($timed_out ? 'immediate' : 'fast');
}

done_testing();
