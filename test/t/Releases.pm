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

# The PostgreSQL major the released versions were made and tested for.
our $RELEASED_FOR = 15;

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
# or undef (with the reason) when its tree was not exported or, on a major
# newer than the one it was released for, it does not build.
sub release_install
{
	my ($version) = @_;
	my $releases = $ENV{PATRON_GROUP_RELEASES};
	return (undef, 'PATRON_GROUP_RELEASES is not set (run the tests with make test)')
	  unless $releases;
	my $src = "$releases/$version";
	return (undef, "version ${version}'s tree is not in $releases (its commit is not in this clone)")
	  unless -f "$src/Makefile";

	my $root = PostgreSQL::Test::Utils::tempdir("release_$version");
	my %dir = map { $_ => pg_config($_) } qw(bindir pkglibdir sharedir includedir-server);
	foreach my $d (values %dir)
	{
		make_path(dirname("$root$d"));
		system('cp', '-a', $d, "$root$d") == 0 or die "could not copy $d";
	}
	my $pg_config = "$root$dir{bindir}/pg_config";
	my $major = (pg_config('version') =~ /^PostgreSQL (\d+)/)[0];
	foreach my $target ('all', 'install')
	{
		my $log = "$PostgreSQL::Test::Utils::log_path/release_${version}_$target.log";
		next if system("make -C '$src' -s $target with_llvm=no PG_CONFIG='$pg_config' >'$log' 2>&1") == 0;
		# The released versions were made for PostgreSQL $RELEASED_FOR; a
		# later major may have changed what they use (1.0 to 1.2 read
		# MyProc->lxid, which 17 moved), and nothing can be upgraded from a
		# version that does not build there.  On their own major a failed
		# build is a failure.
		return (undef, "released version $version does not build on PostgreSQL $major "
			  . "(it was released for $RELEASED_FOR; see $log)")
		  if $target eq 'all' && $major > $RELEASED_FOR;
		die "building version $version ($target) failed: see $log";
	}
	return ("$root$dir{bindir}/..", undef);
}

1;
