# Shared by the lifecycle TAP tests: load the sample library of demo/, attach
# it as scripts/demo.sh does, walk demo/scenario.sql, and take a snapshot of
# everything that must survive a dump, an upgrade or a trip to a standby.

package PatronGroupLibrary;

use strict;
use warnings;

use Exporter 'import';
use File::Basename;
use File::Spec;
use DBI;
use Digest::SHA;
use IPC::Run;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(demo_file load_library attach_library run_scenario
  snapshot snapshot_queries after_workload extension_catalog run_cmd bound_session
  sign_in_statement);

# demo/ is two levels above this file (test/t/)
sub demo_file
{
	my ($name) = @_;
	my $dir = dirname(File::Spec->rel2abs(__FILE__));
	return "$dir/../../demo/$name";
}

# The attach calls of scripts/demo.sh.
sub attach_sql
{
	open(my $fh, '<', demo_file('attach.sql')) or die "demo/attach.sql: $!";
	local $/;
	return <$fh>;
}

# Run a command; returns whether it exited 0, its stdout and its stderr.
sub run_cmd
{
	my ($cmd) = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run($cmd, '>', \$stdout, '2>', \$stderr);
	chomp($stdout);
	chomp($stderr);
	return ($ok ? 1 : 0, $stdout, $stderr);
}

# Run statements over one connection of the extended query protocol, each
# with its bind parameters, as a catalogue passes a patron's token: every
# argument is [sql, parameters...].  Returns the rows of every statement that
# returns any, as psql -At prints them (columns joined by '|', rows by
# newlines), and the first error, if any (the statements after it are not
# run).
# What a catalogue sends to act for the patron of $token on DBI handle
# $dbh: it takes a nonce in the current transaction and proves it holds the
# token, which itself never travels.  Returns the statement and its
# parameters; in bound_session(), ['SIGN_IN', $token] stands for them.
sub sign_in_statement
{
	my ($dbh, $token) = @_;
	my ($nonce) = $dbh->selectrow_array('SELECT patron_group.token_nonce()');
	my (undef, $patron, $expires) = split /\./, $token // '';
	return ('SELECT patron_group.act_as_proof($1, $2, $3)', $patron, $expires,
		defined $nonce ? Digest::SHA::hmac_sha256_hex($nonce, $token) : undef);
}

sub bound_session
{
	my ($node, $db, @statements) = @_;
	my $dbh = DBI->connect('dbi:Pg:dbname=' . $db . ';host=' . $node->host . ';port=' . $node->port,
		'', '', { RaiseError => 0, PrintError => 0, AutoCommit => 1 });
	return ('', DBI->errstr) unless $dbh;
	my (@rows, $error);
	foreach my $s (@statements)
	{
		my ($sql, @params) = @$s;
		($sql, @params) = sign_in_statement($dbh, $params[0]) if $sql eq 'SIGN_IN';
		my $sth = $dbh->prepare($sql);
		if (!$sth || !defined $sth->execute(@params))
		{
			$error = $dbh->errstr;
			last;
		}
		push @rows, map { join('|', map { $_ // '' } @$_) } @{ $sth->fetchall_arrayref }
		  if $sth->{NUM_OF_FIELDS};
	}
	$dbh->disconnect;
	return (join("\n", @rows), $error // '');
}

# Create database $db with the sample library's tables and data.
sub load_library
{
	my ($node, $db) = @_;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node->safe_psql($db, slurp_file(demo_file('library.sql')));
	return;
}

# Attach the library's tables (the extension must exist).
sub attach_library
{
	my ($node, $db) = @_;
	$node->safe_psql($db, attach_sql());
	return;
}

# Walk the demo's scenario: groups, leads, a clone, moves, a removal,
# consent, patron-facing role, protected tables, history.  With
# changes_only, stop before its closing reports (which read the views of
# the current version; everything before them runs on 1.0 too).
sub run_scenario
{
	my ($node, $db, %opts) = @_;
	my $sql = slurp_file(demo_file('scenario.sql'));
	if ($opts{changes_only})
	{
		my $at = index($sql, "\\echo '== 10.");
		die "the scenario has no step 10" if $at < 0;
		$sql = substr($sql, 0, $at);
		# the catalogue's reads sign in as the current version does
		$sql =~ s/^-- catalogue: begin.*?^-- catalogue: end\n//ms
		  or die "the scenario has no catalogue section";
	}
	$node->safe_psql($db, $sql);
	return;
}

# What must be identical: the library's tables, patron_group's tables and
# views, each as one text ordered by key.  Only columns that do not change
# as time passes (items_overdue is counted when read; the sample's loans are
# days away from their due dates, so it is stable within a test).
sub snapshot_queries
{
	my %q;
	foreach my $t (qw(library patron card item circulation transaction billing payment))
	{
		$q{"ils.$t"} =
		  "SELECT string_agg(t::text, E'\\n' ORDER BY t.id) FROM ils.$t t";
	}
	# (the columns every version has; 1.2 adds loan states and the balance)
	$q{'groups'} = q{SELECT string_agg(concat_ws(' ', g.group_id, g.label, g.created_at, g.member_count,
	                                             g.lead_count, g.items_out, g.items_lost, g.amount_billed,
	                                             g.amount_paid), E'\n' ORDER BY g.group_id)
	                   FROM patron_group.groups g};
	$q{'accounts'} = q{SELECT string_agg(concat_ws(' ', a.patron_id, a.group_id, a.is_lead,
	                                               a.share_circulations, a.share_bills,
	                                               a.share_circulations_until, a.share_bills_until,
	                                               a.items_out, a.items_lost, a.amount_billed,
	                                               a.amount_paid), E'\n' ORDER BY a.patron_id)
	                     FROM patron_group.accounts a};
	$q{'history'} = q{SELECT string_agg(h::text, E'\n' ORDER BY h.event_id)
	                    FROM patron_group.history h};
	$q{'patron_facing_roles'} =
	  q{SELECT string_agg(role_name::text || ' ' || registered_by, E'\n' ORDER BY role_name::text)
	      FROM patron_group.patron_facing_roles};
	# (the columns every version has; since 1.2 the conditions are in the
	# mapping views, compared with the other views)
	$q{'attachments'} =
	  q{SELECT string_agg(concat_ws(' ', relid::text, kind, id_column, patron_column,
	                                barcode_column, name_columns::text, clone_columns::text,
	                                due_column, money_kind,
	                                amount_column, via_relid::text, via_id_column,
	                                via_patron_column, protected, attached_at, attached_by),
	                      E'\n' ORDER BY relid::text)
	      FROM patron_group.attachments};
	# fresh counts of the library's tables, patron by patron, beside the
	# recorded totals
	$q{'counted totals'} = q{
	  SELECT string_agg(concat_ws(' ', a.patron_id, a.group_id, a.items_out, a.items_lost,
	                              a.amount_billed, a.amount_paid,
	                              (SELECT count(*) FROM ils.circulation c
	                                WHERE c.patron = a.patron_id AND c.checkin_at IS NULL),
	                              (SELECT coalesce(sum(b.amount), 0) FROM ils.billing b
	                                 JOIN ils.transaction x ON x.id = b.xact
	                                WHERE x.patron = a.patron_id AND NOT b.voided)),
	                    E'\n' ORDER BY a.patron_id)
	    FROM patron_group.accounts a};
	$q{'policies'} = q{
	  SELECT string_agg(format('%s %s %s %s', polrelid::regclass, polname, polcmd,
	                           pg_get_expr(polqual, polrelid)), E'\n'
	                    ORDER BY polrelid::regclass::text, polname)
	    FROM pg_policy};
	$q{'row security'} = q{
	  SELECT string_agg(oid::regclass::text, ' ' ORDER BY oid::regclass::text)
	    FROM pg_class WHERE relrowsecurity};
	$q{'triggers'} = q{
	  SELECT string_agg(format('%s %s %s', tgrelid::regclass, tgname, tgenabled), E'\n'
	                    ORDER BY tgrelid::regclass::text, tgname)
	    FROM pg_trigger WHERE NOT tgisinternal
	     AND tgrelid::regclass::text NOT LIKE 'patron_group.%'};   # the library's tables
	# privileges on the extension's objects (grant_staff, issue_token)
	$q{'privileges'} = q{
	  SELECT string_agg(format('%s %s', o, acl), E'\n' ORDER BY o)
	    FROM (SELECT p.oid::regprocedure::text AS o, p.proacl::text AS acl FROM pg_proc p
	           WHERE p.pronamespace = 'patron_group'::regnamespace
	          UNION ALL
	          SELECT c.oid::regclass::text, c.relacl::text FROM pg_class c
	           WHERE c.relnamespace IN ('patron_group'::regnamespace, 'ils'::regnamespace)
	             AND c.relkind IN ('r', 'v')) x};
	return \%q;
}

# The views of 1.1, when they exist.
sub view_queries
{
	return {
		'group_summary' => q{SELECT string_agg(v::text, E'\n' ORDER BY v.group_id)
		                       FROM patron_group.group_summary v},
		'member_summary' => q{SELECT string_agg(v::text, E'\n' ORDER BY v.patron_id)
		                        FROM patron_group.member_summary v},
		'membership_history' => q{SELECT string_agg(v::text, E'\n' ORDER BY v.event_id)
		                            FROM patron_group.membership_history v},
		'attachment_status' => q{SELECT string_agg(concat_ws(' ', attached_table, kind, mapping,
		                                  triggers, policies, row_security,
		                                  patron_or_barcode_index, missing),
		                                  E'\n' ORDER BY attached_table::text)
		                           FROM patron_group.attachment_status},
	};
}

# name => text for every snapshot query (views too unless $no_views).
sub snapshot
{
	my ($node, $db, %opts) = @_;
	my %q = %{ snapshot_queries() };
	%q = (%q, %{ view_queries() }) unless $opts{no_views};
	my %s;
	foreach my $name (sort keys %q)
	{
		$s{$name} = $node->safe_psql($db, $q{$name});
	}
	return \%s;
}

# Work done after a dump, an upgrade or a recreate: a new patron with a
# card, a new group, a move, a lead, a checkout, a bill and a payment.
# Returns what it produced: new ids and the rows it touched.
sub after_workload
{
	my ($node, $db) = @_;
	# errors are returned with the output, so that a failure fails a
	# comparison instead of ending the test
	my ($ret, $stdout, $stderr) = $node->psql(
		$db, q{
SET patron_group.application_user = 'desk-after';
WITH p AS (INSERT INTO ils.patron (family_name, given_name, home_library)
           VALUES ('Ward', 'Robin', 2) RETURNING id)
INSERT INTO ils.card (patron, barcode) SELECT id, '29999999999990' FROM p;
SELECT patron_group.move_to_group(patron_group.resolve_barcode('29999999999990'),
         into_group_of => 4, reason => 'new household') AS new_group \gset
SELECT patron_group.set_lead(4, reason => 'adult');
SELECT patron_group.move_to_group(7, into_group_of => 4, reason => 'moved in');
INSERT INTO ils.circulation (patron, item, checkout_at, due_at)
SELECT patron_group.resolve_barcode('29999999999990'), 450, now(), now() + interval '21 days';
WITH x AS (INSERT INTO ils.transaction (patron, kind, created_at)
           VALUES (4, 'grocery', now()) RETURNING id)
INSERT INTO ils.billing (xact, amount, billed_at, note) SELECT id, 3.25, now(), 'Printing' FROM x;
INSERT INTO ils.payment (xact, amount, paid_at, kind)
SELECT max(xact), 1.00, now(), 'cash' FROM ils.billing;
SELECT 'new group ' || :new_group;
SELECT 'patron ' || max(id) FROM ils.patron;
SELECT 'circulation ' || max(id) FROM ils.circulation;
SELECT string_agg(concat_ws(' ', group_id, member_count, lead_count, items_out, items_lost,
                            amount_billed, amount_paid), E'\n' ORDER BY group_id)
  FROM patron_group.groups WHERE group_id >= :new_group OR group_id IN
       (SELECT group_id FROM patron_group.accounts WHERE patron_id IN (4, 7));
SELECT string_agg(concat_ws(' ', event_id, db_role, app_user, action, patron_id, from_group,
                            to_group, reason), E'\n' ORDER BY event_id)
  FROM patron_group.history WHERE app_user = 'desk-after';
});
	return $stderr eq '' ? $stdout : "$stdout\n$stderr";
}

# The extension's objects as the catalogs describe them: the extension
# itself; functions with their signatures, properties and definitions;
# relations with their options, replica identity and row-level security;
# columns with types, defaults, identity and column privileges; sequences;
# constraints, indexes, views, rules, triggers (and whether enabled),
# policies and event triggers; comments on all of them; privileges and the
# initial privileges pg_dump relies on; the tables and sequences pg_dump
# writes with the extension (extconfig) with their conditions
# (extcondition); and the extension's membership list.  Privileges are
# compared as sets (an aclitem[]'s order means nothing).
sub extension_catalog
{
	my ($node, $db) = @_;
	return $node->safe_psql(
		$db, q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'patron_group'),
members AS (
    SELECT classid, objid, objsubid, pg_describe_object(classid, objid, objsubid) AS object
      FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
       AND refobjid = (SELECT oid FROM ext) AND deptype = 'e'
),
rels AS (SELECT oid FROM pg_class WHERE relnamespace = 'patron_group'::regnamespace)
SELECT 'member ' || object FROM members
UNION ALL
SELECT format('extension %s version=%s schema=%s relocatable=%s owner=%s',
              e.extname, e.extversion, e.extnamespace::regnamespace, e.extrelocatable,
              pg_get_userbyid(e.extowner))
  FROM pg_extension e WHERE e.oid = (SELECT oid FROM ext)
UNION ALL
SELECT format('function %s returns %s %s kind=%s language=%s volatile=%s parallel=%s strict=%s secdef=%s leakproof=%s cost=%s rows=%s config=%s owner=%s acl=%s comment=%s body=%s definition=%s',
              p.oid::regprocedure, pg_get_function_result(p.oid),
              pg_get_function_arguments(p.oid), p.prokind, l.lanname, p.provolatile, p.proparallel,
              p.proisstrict, p.prosecdef, p.proleakproof, p.procost, p.prorows, p.proconfig,
              pg_get_userbyid(p.proowner),
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(p.proacl) x),
              obj_description(p.oid, 'pg_proc'), md5(p.prosrc || coalesce(p.probin, '')),
              md5(pg_get_functiondef(p.oid)))
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'patron_group'::regnamespace
UNION ALL
SELECT format('relation %s kind=%s persistence=%s options=%s replica-identity=%s row-security=%s force-row-security=%s owner=%s acl=%s comment=%s',
              c.relname, c.relkind, c.relpersistence, c.reloptions, c.relreplident,
              c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner),
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(c.relacl) x),
              obj_description(c.oid, 'pg_class'))
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels)
UNION ALL
SELECT format('column %s.%s %s collation=%s notnull=%s default=%s identity=%s generated=%s attnum-rank=%s acl=%s comment=%s',
              c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation,
              a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
              rank() OVER (PARTITION BY c.oid ORDER BY a.attnum),
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(a.attacl) x),
              col_description(c.oid, a.attnum))
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.oid IN (SELECT oid FROM rels)
UNION ALL
SELECT format('sequence %s type=%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s owned-by=%s',
              s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
              s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
              (SELECT string_agg(format('%s.%s (%s)', d.refobjid::regclass, a.attname, d.deptype), ', ')
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                  AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0))
  FROM pg_sequence s WHERE s.seqrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT format('constraint %s.%s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
  FROM pg_constraint c WHERE c.connamespace = 'patron_group'::regnamespace
UNION ALL
SELECT format('index %s', pg_get_indexdef(i.indexrelid))
  FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT format('view %s %s', c.relname, pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM rels) AND c.relkind = 'v'
UNION ALL
SELECT format('rule %s', pg_get_ruledef(r.oid))
  FROM pg_rewrite r WHERE r.ev_class IN (SELECT oid FROM rels) AND r.rulename <> '_RETURN'
UNION ALL
SELECT format('trigger %s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
  FROM pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
UNION ALL
SELECT format('policy %s on %s %s', p.polname, p.polrelid::regclass,
              (SELECT row_to_json(x) FROM (SELECT cmd, permissive, roles, qual, with_check
                                              FROM pg_policies
                                             WHERE schemaname = 'patron_group'
                                               AND tablename = c.relname AND policyname = p.polname) x))
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polrelid IN (SELECT oid FROM rels)
UNION ALL
SELECT format('event trigger %s %s %s %s enabled=%s owner=%s', evtname, evtevent, evtfoid::regproc, evttags,
              evtenabled, pg_get_userbyid(evtowner))
  FROM pg_event_trigger
UNION ALL
SELECT format('config dump %s condition=%L', x.config::regclass, x.condition)
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(config, condition)
 WHERE e.oid = (SELECT oid FROM ext)
UNION ALL
SELECT format('schema owner=%s acl=%s', pg_get_userbyid(nspowner),
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(nspacl) x))
  FROM pg_namespace WHERE nspname = 'patron_group'
UNION ALL
SELECT format('default privileges %s %s', d.defaclobjtype,
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(d.defaclacl) x))
  FROM pg_default_acl d WHERE d.defaclnamespace = 'patron_group'::regnamespace
UNION ALL
-- comments on what the lines above do not show with their object
SELECT format('comment on %s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
  FROM pg_description d
 WHERE d.classoid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass)
   AND (EXISTS (SELECT FROM members m WHERE m.classid = d.classoid AND m.objid = d.objoid)
        OR d.classoid = 'pg_extension'::regclass AND d.objoid = (SELECT oid FROM ext)
        OR d.classoid = 'pg_namespace'::regclass AND d.objoid = 'patron_group'::regnamespace
        OR d.classoid = 'pg_constraint'::regclass
           AND d.objoid IN (SELECT oid FROM pg_constraint WHERE connamespace = 'patron_group'::regnamespace)
        OR d.classoid = 'pg_trigger'::regclass
           AND d.objoid IN (SELECT oid FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM rels))
        OR d.classoid = 'pg_policy'::regclass
           AND d.objoid IN (SELECT oid FROM pg_policy WHERE polrelid IN (SELECT oid FROM rels))
        OR d.classoid = 'pg_event_trigger'::regclass
        OR d.classoid = 'pg_type'::regclass
           AND d.objoid IN (SELECT oid FROM pg_type WHERE typnamespace = 'patron_group'::regnamespace))
UNION ALL
SELECT format('initial privileges %s %s %s', pg_describe_object(classoid, objoid, objsubid), privtype,
              (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(initprivs) x))
  FROM pg_init_privs ip
 WHERE EXISTS (SELECT FROM members m WHERE m.classid = ip.classoid AND m.objid = ip.objoid)
    OR (classoid = 'pg_proc'::regclass
        AND objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'patron_group'::regnamespace))
    OR (classoid = 'pg_class'::regclass AND objoid IN (SELECT oid FROM rels))
    OR (classoid = 'pg_type'::regclass
        AND objoid IN (SELECT oid FROM pg_type WHERE typnamespace = 'patron_group'::regnamespace))
    OR (classoid = 'pg_namespace'::regclass AND objoid = 'patron_group'::regnamespace)
ORDER BY 1
});
}

1;
