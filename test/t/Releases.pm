# The released versions of patron_group, built as they were: for the
# upgrade test, which needs a database made and used by an old version's
# own library before it is updated.
#
# scripts/test.sh exports each released version's tree (test/released_versions
# names their commits) into $PATRON_GROUP_RELEASES/<version>.  release_install()
# copies the PostgreSQL installation under test (PostgreSQL is relocatable:
# its programs find their libraries and share files relative to themselves),
# builds that version's library against the copy and installs it there, and
# returns the copy's install path for PostgreSQL::Test::Cluster.

package Releases;

use strict;
use warnings;

use Exporter 'import';
use File::Basename;
use File::Path qw(make_path);
use PostgreSQL::Test::Utils;

our @EXPORT = qw(release_install);

# pg_config of the installation under test (first in PATH when run by PGXS).
sub pg_config
{
	my ($option) = @_;
	my $out = `pg_config --$option`;
	die "pg_config --$option failed" if $?;
	chomp($out);
	return $out;
}

# The install path of a private installation holding $version's library,
# or undef (with the reason) when its tree was not exported.
sub release_install
{
	my ($version) = @_;
	my $releases = $ENV{PATRON_GROUP_RELEASES};
	return (undef, 'PATRON_GROUP_RELEASES is not set (run the tests with make test)')
	  unless $releases;
	my $src = "$releases/$version";
	return (undef, "version $version's tree is not in $releases (its commit is not in this clone)")
	  unless -f "$src/Makefile";

	my $root = PostgreSQL::Test::Utils::tempdir("release_$version");
	my %dir = map { $_ => pg_config($_) } qw(bindir pkglibdir sharedir includedir-server);
	foreach my $d (values %dir)
	{
		make_path(dirname("$root$d"));
		system('cp', '-a', $d, "$root$d") == 0 or die "could not copy $d";
	}
	my $pg_config = "$root$dir{bindir}/pg_config";
	foreach my $target ('all', 'install')
	{
		my $log = "$PostgreSQL::Test::Utils::log_path/release_${version}_$target.log";
		system("make -C '$src' -s $target with_llvm=no PG_CONFIG='$pg_config' >'$log' 2>&1") == 0
		  or die "building version $version ($target) failed: see $log";
	}
	return ("$root$dir{bindir}/..", undef);
}

1;
