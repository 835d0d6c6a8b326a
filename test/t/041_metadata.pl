# The release metadata says what patron_group.control says: META.json
# (PGXN) has the control file's default_version as its version and as the
# extension's, names an install script from which that version can be
# reached by the upgrade scripts in sql/, and requires PostgreSQL 15 and the
# extensions the control file requires; CHANGELOG.md and debian/changelog
# have an entry for that version, and the changelog's entry names a script
# that exists.  Needs no server.

use strict;
use warnings;

use FindBin;
use File::Spec;
use JSON::PP;
use Test::More;

my $top = File::Spec->rel2abs("$FindBin::RealBin/../..");
my $PG_MAJOR = 15;

sub slurp
{
	my ($name) = @_;
	open(my $fh, '<', "$top/$name") or die "$name: $!";
	local $/;
	return <$fh>;
}

# --- patron_group.control ------------------------------------------------------

my %control;
for (split /\n/, slurp('patron_group.control'))
{
	next if /^\s*(#|$)/;
	/^\s*(\w+)\s*=\s*(?:'((?:[^']|'')*)'|(\S+))\s*$/ or die "patron_group.control: cannot read: $_";
	$control{$1} = defined $2 ? $2 =~ s/''/'/gr : $3;
}
my $version = $control{default_version};
ok(defined $version && $version =~ /^\d+(\.\d+){0,2}$/,
	'patron_group.control has a default_version of one to three numbers')
  or BAIL_OUT('no usable default_version in patron_group.control');
my @control_requires = sort grep { $_ ne '' } map { s/^\s+|\s+$//gr } split /,/, $control{requires} // '';

# PGXN versions are semantic versions: 1.2 is 1.2.0
my @parts = split /\./, $version;
push @parts, 0 while @parts < 3;
my $semver = join('.', @parts);

# --- META.json -------------------------------------------------------------------

my $meta = JSON::PP->new->decode(slurp('META.json'));
is($meta->{name}, 'patron_group', 'META.json: the distribution is patron_group');
is($meta->{version}, $semver, "META.json: version $semver, as default_version $version");
my $ext = $meta->{provides}{patron_group};
ok($ext, 'META.json: provides the extension patron_group')
  or BAIL_OUT('META.json has no provides.patron_group');
is($ext->{version}, $semver, "META.json: provides.patron_group.version $semver");
ok(-f "$top/$ext->{docfile}", "META.json: the docfile $ext->{docfile} exists") if $ext->{docfile};

# the scripts in sql/: install scripts patron_group--V.sql, upgrades patron_group--A--B.sql
opendir(my $dh, "$top/sql") or die "sql/: $!";
my @scripts = grep { /^patron_group--.*\.sql$/ } readdir $dh;
closedir $dh;
my %install = map { /^patron_group--([^-]+)\.sql$/ ? ($1 => 1) : () } @scripts;
my %upgrade;
for (@scripts)
{
	push @{ $upgrade{$1} }, $2 if /^patron_group--([^-]+)--([^-]+)\.sql$/;
}

# the versions an install of $from reaches through the upgrade scripts
sub reachable
{
	my ($from) = @_;
	my %seen = ($from => 1);
	my @todo = ($from);
	while (defined(my $v = shift @todo))
	{
		for my $next (@{ $upgrade{$v} // [] })
		{
			push @todo, $next unless $seen{$next}++;
		}
	}
	return \%seen;
}

my $file = $ext->{file} // '';
ok(-f "$top/$file", "META.json: provides.patron_group.file $file exists");
my ($file_version) = $file =~ m{^sql/patron_group--([^-]+)\.sql$};
ok(defined $file_version && $install{$file_version},
	"META.json: provides.patron_group.file is an install script of sql/");
ok(defined $file_version && reachable($file_version)->{$version},
	"CREATE EXTENSION can install $version: from $file through the upgrade scripts of sql/")
  or diag('scripts in sql/: ' . join(' ', sort @scripts));
ok($install{$version} || (grep { grep { $_ eq $version } @$_ } values %upgrade),
	"sql/ has the install or upgrade script that makes version $version");

# requires: PostgreSQL 15, and the extensions the control file requires
my $requires = $meta->{prereqs}{runtime}{requires} // {};

# does version $v satisfy a PGXN version range like ">= 15.0.0, < 16.0.0"?
sub vcmp
{
	my ($x, $y) = map { [ split /\./ ] } @_;
	for my $i (0 .. 2)
	{
		my $c = ($x->[$i] // 0) <=> ($y->[$i] // 0);
		return $c if $c;
	}
	return 0;
}

sub satisfies
{
	my ($v, $range) = @_;
	return 1 if "$range" eq '0';
	for my $term (split /\s*,\s*/, $range)
	{
		my ($op, $want) = $term =~ /^\s*(==|!=|>=|<=|>|<)?\s*(\d+\.\d+\.\d+)\s*$/
		  or return 0;
		$op //= '>=';
		my $c = vcmp($v, $want);
		my %ok = ('==' => $c == 0, '!=' => $c != 0, '>=' => $c >= 0,
			'<=' => $c <= 0, '>' => $c > 0, '<' => $c < 0);
		return 0 unless $ok{$op};
	}
	return 1;
}

my $pg = $requires->{PostgreSQL};
ok(defined $pg, 'META.json: prereqs.runtime.requires names PostgreSQL');
$pg //= '';
ok(satisfies("$PG_MAJOR.0.0", $pg) && satisfies("$PG_MAJOR.18.0", $pg),
	"META.json: PostgreSQL \"$pg\" admits PostgreSQL $PG_MAJOR");
ok(!satisfies(($PG_MAJOR - 1) . ".99.0", $pg) && !satisfies(($PG_MAJOR + 1) . ".0.0", $pg),
	"META.json: PostgreSQL \"$pg\" admits no other major version (the C code is built for $PG_MAJOR)");
is_deeply([ sort grep { $_ ne 'PostgreSQL' } keys %$requires ],
	\@control_requires,
	'META.json: the extensions it requires are those of patron_group.control ('
	  . (@control_requires ? join(', ', @control_requires) : 'none') . ')');

# --- CHANGELOG.md and debian/changelog --------------------------------------------

my $changelog = slurp('CHANGELOG.md');
my @entries = split /^## /m, $changelog;
shift @entries;
my ($entry) = grep { /^\Q$version\E\s*(\n|$)/ } @entries;
ok($entry, "CHANGELOG.md has an entry \"## $version\"");
my ($named) = ($entry // '') =~ /^(?:Upgrade|Install): (sql\/\S+\.sql)\s*$/m;
ok(defined $named && $named =~ m{^sql/patron_group--(?:[^-]+--)?\Q$version\E\.sql$},
	"CHANGELOG.md: the $version entry names the script that makes $version ("
	  . ($named // 'none') . ')');
ok(defined $named && -f "$top/$named", 'CHANGELOG.md: that script exists in the tree');
my %changelog_versions;
$changelog_versions{$1}++ while $changelog =~ /^## (\S+)/mg;
ok(!(grep { $changelog_versions{$_} > 1 } keys %changelog_versions),
	'CHANGELOG.md: one entry per version');

my ($debian) = slurp('debian/changelog') =~ /^patron-group \(([^)]+)\)/;
is($debian, $version, "debian/changelog: the newest entry is $version");

# The installed library exports only what PostgreSQL calls: the module magic,
# _PG_init, and each SQL-callable function with its info function (libraries
# are loaded with RTLD_GLOBAL, so anything more could clash with another's).
my $pg_config = $ENV{PG_CONFIG} // 'pg_config';
chomp(my $libdir = `$pg_config --pkglibdir`);
my $library = "$libdir/patron_group.so";
ok(-f $library, "the installed library is $library");
my @symbols = map { (split ' ')[-1] } grep { /\s[A-Za-z]\s/ } split /\n/, `nm -D --defined-only $library`;
my %symbol = map { $_ => 1 } @symbols;
my @callable = grep { /^pg_/ && !/^pg_finfo_/ } @symbols;
ok(scalar(@callable) > 40, 'the library exports the SQL-callable functions (' . scalar(@callable) . ')');
my @stray = grep {
	my $s = $_;
	!($s eq '_PG_init' || $s eq 'Pg_magic_func'
		|| ($s =~ /^pg_finfo_(.+)$/ && $symbol{$1})
		|| ($s =~ /^pg_/ && $s !~ /^pg_finfo_/ && $symbol{"pg_finfo_$s"}))
} @symbols;
is(scalar(@stray), 0, 'the library exports nothing PostgreSQL does not call')
  or diag('exported: ' . join(' ', @stray));

# src/README.md's layers, checked against the object files' symbol tables:
# every call from one file to another goes to a row below the caller's.
my ($diagram) = slurp('src/README.md') =~ /```\n(.*?)```/s;
my (%row, $rows);
foreach my $line (split /\n/, $diagram // '')
{
	my @files = substr($line, 0, 61) =~ /\b([a-z_]+)\.c\b/g;
	next unless @files;
	$rows++;
	$row{$_} = $rows foreach @files;    # rows count from the top
}
my @objects = glob("$top/src/*.o");
ok(scalar(@objects) > 20, 'the object files are there to check the layers against ('
	  . scalar(@objects) . ')');
my (%defined, %undefined);
foreach my $o (@objects)
{
	my ($file) = $o =~ m{/([a-z_]+)\.o$};
	foreach (split /\n/, `nm $o`)
	{
		my @f = split ' ';
		$defined{ $f[2] } = $file if @f == 3 && $f[1] =~ /^[TDBR]$/;
		push @{ $undefined{$file} }, $f[1] if @f == 2 && $f[0] eq 'U';
	}
}
my @unplaced = grep { !$row{$_} } map { m{/([a-z_]+)\.o$} } @objects;
is(scalar(@unplaced), 0, 'src/README.md places every C file in a layer')
  or diag('not in the diagram: ' . join(' ', @unplaced));
my @upward;
foreach my $file (sort keys %undefined)
{
	foreach my $symbol (@{ $undefined{$file} })
	{
		my $callee = $defined{$symbol};
		next if !defined $callee || $callee eq $file || !$row{$file} || !$row{$callee};
		push @upward, "$file.c -> $callee.c ($symbol)" if $row{$callee} <= $row{$file};
	}
}
is(scalar(@upward), 0, 'every call between C files points down src/README.md\'s layers')
  or diag(join("\n", @upward));

done_testing();
