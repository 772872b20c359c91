# 004_pg_upgrade.pl
#	  pg_upgrade of a cluster with harbor_orm installed and holds in flight,
#	  in copy mode and in --link mode (same major version: only one is
#	  installed here).  Before the upgrade the old cluster has registered
#	  models with relationships, a stock model, and active, confirmed,
#	  released and expired holds, plus one active hold whose time runs out
#	  while the clusters are down.  After the upgrade the new cluster has the
#	  same extension version, the same holds (created_by included), a
#	  balanced ledger, the same harbor.load() answer, and reserve, confirm,
#	  release and sweep (by hand and by the background sweeper) work.
#
# Copyright (c) 2026, harbor_orm authors
use strict;
use warnings;
use Cwd;
use FindBin;
use lib $FindBin::RealBin;
use HarborTAP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Both clusters run the same binaries (pg_upgrade -b = -B).
my $bindir = `pg_config --bindir`;
chomp $bindir;

# The holds, one line each, in id order: everything pg_upgrade must keep.
my $holds_sql = q{
SELECT string_agg(format('%s %s %s %s %s %s %s %s %s', id, model, item_id, order_id, qty, status,
                         expires_at, closed_at IS NOT NULL, coalesce(created_by::text, '-')),
                  E'\n' ORDER BY id)
  FROM harbor.stock_reservations};
my $load_sql = q{SELECT harbor.load('products', ARRAY[1, 2], '{brand,variants}')::text};

for my $mode ('copy', 'link')
{
	# The sweeper serves only the postgres database during the upgrade, so
	# that the shop's holds are what the old cluster left.
	my $old = harbor_node("old_$mode");
	$old->start;
	$old->safe_psql('postgres', 'CREATE DATABASE shop');
	$old->safe_psql(
		'shop', q{
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE brands (id int PRIMARY KEY, name text);
CREATE TABLE products (id int PRIMARY KEY, name text, brand_id int REFERENCES brands);
CREATE TABLE variants (id int PRIMARY KEY, product_id int REFERENCES products,
                       stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO brands VALUES (1, 'Harbor');
INSERT INTO products VALUES (1, 'Mug', 1), (2, 'Tee', 1);
INSERT INTO variants SELECT g, 1 + g % 2, 10 FROM generate_series(1, 6) g;
SELECT harbor.reflect();
SELECT harbor.enable_stock('variants');
SELECT harbor.enable_change_notify('products');
CREATE TABLE t_initial AS SELECT id, stock_qty FROM variants;
SELECT harbor.reserve_stock(1, 2, 'o-active', interval '1 hour');
SELECT harbor.reserve_many('o-many', '[{"item_id": 2, "qty": 1}, {"item_id": 3, "qty": 2}]', interval '1 hour');
SELECT harbor.reserve_stock(4, 1, 'o-confirmed');
SELECT harbor.confirm_reservation('o-confirmed');
SELECT harbor.reserve_stock(5, 1, 'o-released');
SELECT harbor.release_reservation('o-released');
SELECT harbor.reserve_stock(6, 3, 'o-expired', interval '1 millisecond');
SELECT pg_sleep(0.01);
SELECT harbor.sweep_expired();
-- in flight: its time runs out while the clusters are down
SELECT harbor.reserve_stock(6, 2, 'o-in-flight', interval '1 second');
});
	is(ledger_problems($old, 'shop', 'variants', 'variants'), '', "$mode: the old cluster's ledger balances");
	my $version_before =
	  $old->safe_psql('shop', "SELECT extversion FROM pg_extension WHERE extname = 'harbor_orm'");
	my $holds_before = $old->safe_psql('shop', $holds_sql);
	my $load_before = $old->safe_psql('shop', $load_sql);
	my $models_before = $old->safe_psql('shop',
		'SELECT string_agg(m::text, E\'\n\' ORDER BY m::text) FROM harbor.models m');
	my $rels_before = $old->safe_psql('shop',
		'SELECT string_agg(r::text, E\'\n\' ORDER BY r::text) FROM harbor.relationships r');
	like($holds_before, qr/o-expired 3 expired/, "$mode: the old cluster has an expired hold");
	like($load_before, qr/Harbor/, "$mode: load() answers before the upgrade");
	$old->stop;

	my $new = harbor_node("new_$mode");

	# pg_upgrade writes its logs into the working directory and the new
	# data directory; it runs as the clusters' owner (the TAP user).
	my $cwd = getcwd();
	my $workdir = $new->basedir . '/upgrade';
	mkdir $workdir or die "mkdir $workdir: $!";
	chdir $workdir or die "chdir $workdir: $!";
	my @cmd = (
		"$bindir/pg_upgrade", '--no-sync',
		'-b', $bindir, '-B', $bindir,
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-p', $old->port, '-P', $new->port,
		'-s', $new->host);
	push @cmd, '--link' if $mode eq 'link';
	command_ok(\@cmd, "$mode: pg_upgrade succeeds");
	chdir $cwd or die "chdir $cwd: $!";

	$new->start;
	is($new->safe_psql('shop', "SELECT extversion FROM pg_extension WHERE extname = 'harbor_orm'"),
		$version_before, "$mode: same extension version ($version_before)");
	is($new->safe_psql('shop', $holds_sql), $holds_before, "$mode: the holds are kept, created_by included");
	is($new->safe_psql('shop', $load_sql), $load_before, "$mode: load() returns the same JSON");
	is($new->safe_psql('shop', 'SELECT string_agg(m::text, E\'\n\' ORDER BY m::text) FROM harbor.models m'),
		$models_before, "$mode: the models are kept");
	is($new->safe_psql('shop', 'SELECT string_agg(r::text, E\'\n\' ORDER BY r::text) FROM harbor.relationships r'),
		$rels_before, "$mode: the relationships are kept");
	is(ledger_problems($new, 'shop', 'variants', 'variants'), '', "$mode: the ledger balances after the upgrade");

	# The in-flight hold expired while the clusters were down.
	ok( wait_until(10, sub {
				$new->safe_psql('shop',
					"SELECT expires_at < now() FROM harbor.stock_reservations WHERE order_id = 'o-in-flight'") eq 't';
			}),
		"$mode: the in-flight hold has expired");
	is( $new->safe_psql(
			'shop', q{
SELECT (harbor.reserve_stock(5, 3, 'o-new', interval '1 hour')).qty;
SELECT (harbor.reserve_stock(1, 3, 'o-active', interval '1 hour')).qty;
SELECT harbor.confirm_reservation('o-active');
SELECT harbor.release_reservation('o-many');
SELECT harbor.release_reservation('o-new');
SELECT harbor.sweep_expired();
SELECT string_agg(order_id || ':' || item_id || ':' || status, ',' ORDER BY id)
  FROM harbor.stock_reservations;
SELECT string_agg(id || '=' || stock_qty, ',' ORDER BY id) FROM variants;
}),
		join("\n",
			3, 3, 1, 2, 1, 1,
			'o-active:1:confirmed,o-many:2:released,o-many:3:released,o-confirmed:4:confirmed,'
			  . 'o-released:5:released,o-expired:6:expired,o-in-flight:6:expired,o-new:5:released',
			'1=7,2=10,3=10,4=9,5=10,6=10'),
		"$mode: reserve, confirm, release and sweep work on the upgraded cluster");
	is(ledger_problems($new, 'shop', 'variants', 'variants'), '', "$mode: the ledger balances after the calls");

	# The background sweeper, once it serves the shop, sweeps a hold made
	# after the upgrade.
	$new->append_conf('postgresql.conf', "harbor_orm.sweeper_databases = 'shop'");
	$new->reload;
	$new->safe_psql('shop', "SELECT harbor.reserve_stock(2, 4, 'o-swept', interval '1 second')");
	ok( wait_until(30, sub {
				$new->safe_psql('shop',
					"SELECT status FROM harbor.stock_reservations WHERE order_id = 'o-swept'") eq 'expired';
			}),
		"$mode: the background sweeper sweeps in the upgraded cluster");
	is(ledger_problems($new, 'shop', 'variants', 'variants'), '', "$mode: the ledger balances after the sweeper");
	is(join('', crash_lines(slurp_file($new->logfile))), '', "$mode: no crash in the new cluster's log");
	$new->stop;
}

done_testing();
