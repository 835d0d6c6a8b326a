#!/usr/bin/perl
# DBD::Pg (Debian's libdbd-pg-perl): the catalogue signs its lead in as
# doc/drivers.md shows, staff look a patron up and move them (rolled back),
# a reporting role reads member_summary and its column comments.
# The PGD_* environment is described in test/drivers/README.md.
use strict;
use warnings;
use DBI;
use Digest::SHA qw(hmac_sha256_hex);
use Encode qw(decode);

my %E = %ENV;
my $pooled = ($E{PGD_POOLED} // '') eq '1';
my $name = 'DBD::Pg ' . ($pooled ? 'pgbouncer' : 'direct');
sub ids { return join ',', sort { $a <=> $b } grep { $_ ne '' } @_ }
my $token = $E{PGD_TOKEN};
my $lead = (split /\./, $token)[1];
my (@failures, @findings);
my $checks = 0;

sub check
{
	my ($label, $ok, $detail) = @_;
	$checks++;
	push @failures, "$label: " . ($detail // '') unless $ok;
}

sub connect_as
{
	my ($user) = @_;
	# behind pgbouncer: pg_server_prepare => 0, so that the statement handles
	# reused below are not prepared by name (doc/drivers.md)
	return DBI->connect("dbi:Pg:host=$E{PGD_HOST};port=$E{PGD_PORT};dbname=$E{PGD_DBNAME}",
		$user, '', { AutoCommit => 0, RaiseError => 1, PrintError => 0,
			($pooled ? (pg_server_prepare => 0) : ()) });
}

# (1) the catalogue: eight transactions on one connection, each signing in again
my $dbh = connect_as($E{PGD_OPAC});
my $hold = connect_as($E{PGD_OPAC});
# statement handles prepared once and executed in every transaction
my $members_sth = $dbh->prepare(
	'SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL ORDER BY 1');
my $loans_sth = $dbh->prepare('SELECT id, patron FROM ils.circulation ORDER BY id');
my $bills_sth = $dbh->prepare('SELECT id FROM ils.billing ORDER BY id');
my %backends;
my %other_loans = map { $_ => 1 } split /,/, $E{PGD_OTHER_LOANS};
my %other_bills = map { $_ => 1 } split /,/, $E{PGD_OTHER_BILLS};
for my $i (1 .. 8)
{
	if ($i % 2)    # another client holds a server connection: the pool must use another one
	{
		my ($acting) = $hold->selectrow_array('SELECT patron_group.current_patron()');
		check("tx $i: the other client acts for nobody", !defined $acting);
	}
	my ($acting, $pid) = $dbh->selectrow_array('SELECT patron_group.current_patron(), pg_backend_pid()');
	$backends{$pid} = 1;
	check("tx $i: nobody asserted at its start", !defined $acting, "current_patron() = " . ($acting // ''));
	my ($nonce) = $dbh->selectrow_array('SELECT patron_group.token_nonce()');
	my (undef, $patron, $expires) = split /\./, $token;
	$dbh->do('SELECT patron_group.act_as_proof(?, ?, ?)', undef,
		$patron, $expires, hmac_sha256_hex($nonce, $token));    # (message, key)
	my ($now) = $dbh->selectrow_array('SELECT patron_group.current_patron()');
	check("tx $i: act_as_proof", ($now // '') eq $lead, $now);
	my $members = ids(map { $_->[0] } @{ $dbh->selectall_arrayref($members_sth, undef, $lead) });
	check("tx $i: group_members", $members eq $E{PGD_MEMBERS}, $members);
	my $loans = $dbh->selectall_arrayref($loans_sth);
	my $loan_ids = ids(map { $_->[0] } @$loans);
	check("tx $i: loans", $loan_ids eq $E{PGD_LOANS}, $loan_ids);
	check("tx $i: the consenting member's loans", scalar(grep { $_->[1] == $E{PGD_CONSENTING} } @$loans));
	check("tx $i: no loan of the other member", !grep { $other_loans{ $_->[0] } } @$loans);
	my $bills = ids(map { $_->[0] } @{ $dbh->selectall_arrayref($bills_sth) });
	check("tx $i: bills", $bills eq $E{PGD_BILLS}, $bills);
	check("tx $i: no bill of the other member", !grep { $other_bills{$_} } split /,/, $bills);
	$dbh->commit;
	$hold->commit if $i % 2;
}
my @after = $dbh->selectrow_array(
	'SELECT patron_group.current_patron(), (SELECT count(*) FROM ils.circulation)');
check('after: acts for nobody, sees no loan', !defined $after[0] && $after[1] == 0);
$dbh->commit;
check('the pool served the transactions from several server connections', keys(%backends) > 1)
  if $pooled;
$_->disconnect for $dbh, $hold;

# (2) staff: find a patron by a barcode typed badly, move them, roll back
my $staff = connect_as($E{PGD_STAFF});
my ($moved, $into) = ($E{PGD_BARCODE_PATRON}, $lead);
my $staff_members = sub {
	return { map { $_->[0] => 1 } @{ $staff->selectall_arrayref(
		'SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL', undef, $lead) } };
};
my @found = $staff->selectrow_array(
	'SELECT patron_id, display_name FROM patron_group.find_patron(?)', undef,
	decode('UTF-8', $E{PGD_BARCODE}));    # the environment holds bytes; DBD::Pg sends characters
check('find_patron', "@found" eq "$moved $E{PGD_BARCODE_NAME}", "@found");
my ($group) = eval {
	$staff->selectrow_array('SELECT patron_group.move_to_group(?, into_group_of => ?)', undef, $moved, $into);
};
if (defined $group)
{
	check('move_to_group (plain parameters)', $group == $E{PGD_GROUP}, $group);
	check('group_members after the move', $staff_members->()->{$moved});
}
else
{
	my $msg = "move_to_group (plain parameters): " . ($staff->state // '') . ' ' . ((split /\n/, $staff->errstr // $@)[0]);
	push @{ $staff->state eq '42725' ? \@findings : \@failures }, $msg;
}
$staff->rollback;
# labelled: the same move with explicit casts
($group) = $staff->selectrow_array(
	'SELECT patron_group.move_to_group(?::bigint, into_group_of => ?::bigint)', undef, $moved, $into);
check('cast: move_to_group(?::bigint, ...)', $group == $E{PGD_GROUP}, $group);
check('cast: group_members after the move', $staff_members->()->{$moved});
$staff->rollback;
check('after ROLLBACK the patron is not in the group', !$staff_members->()->{$moved});
$staff->rollback;
$staff->disconnect;

# (3) reporting: member_summary with a filter; column comments from
# pg_description and from DBI's column_info (REMARKS)
my $rep = connect_as($E{PGD_REPORTER});
my $rows = $rep->selectall_hashref(
	'SELECT patron_id, is_lead::int AS l, circulations_shared_now::int AS c, bills_shared_now::int AS b
	   FROM patron_group.member_summary WHERE group_id = ? ORDER BY patron_id', 'patron_id', undef, $E{PGD_GROUP});
check("member_summary: the group's members", ids(keys %$rows) eq $E{PGD_MEMBERS}, ids(keys %$rows));
my $flags = sub { my $r = $rows->{ $_[0] } // {}; return join '', map { $r->{$_} // '-' } qw(l c b) };
check('member_summary: lead and consents',
	$flags->($lead) =~ /^1/ && $flags->($E{PGD_CONSENTING}) eq '011' && $flags->($E{PGD_OTHER}) eq '000',
	join ' ', map { "$_:" . $flags->($_) } sort keys %$rows);
my %comments = map { @$_ } @{ $rep->selectall_arrayref(
	q{SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
	   WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0
	     AND NOT a.attisdropped ORDER BY a.attnum}) };
check('pg_description: every column has a comment', %comments && !grep { !defined } values %comments);
check("pg_description: group_id's comment", ($comments{group_id} // '') eq $E{PGD_COMMENT}, $comments{group_id});
my %remarks = map { $_->{COLUMN_NAME} => $_->{REMARKS} }
  @{ $rep->column_info(undef, 'patron_group', 'member_summary', '%')->fetchall_arrayref({}) };
check('column_info: REMARKS are the comments, column by column',
	join("\n", map { "$_=" . ($remarks{$_} // 'NULL') } sort keys %remarks) eq
	  join("\n", map { "$_=" . ($comments{$_} // 'NULL') } sort keys %comments),
	join(', ', map { "$_=" . ($remarks{$_} // 'NULL') } sort keys %remarks));
$rep->rollback;
$rep->disconnect;

print "$name: FINDING $_\n" for @findings;
print "$name: FAIL $_\n" for @failures;
printf "%s: %d/%d checks passed, backends %d%s\n", $name, $checks - @failures, $checks,
  scalar(keys %backends), (@findings ? ', ' . scalar(@findings) . ' finding(s)' : '');
exit(@failures ? 1 : @findings ? 2 : 0);
