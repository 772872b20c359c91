# 002_standby.pl
#	  harbor_orm on a streaming standby and across failover:
#	  - load/get/find/describe answer on the standby exactly as on the primary;
#	  - the sweeper does nothing on the standby (expired holds stay active)
#	    and the standby's log shows no harbor errors, let alone a loop;
#	  - writes on the standby are a clean read-only error (25006);
#	  - after promotion the new primary's sweeper returns the expired holds;
#	  - with synchronous replication no acknowledged reservation is lost when
#	    the primary stops without warning and the standby is promoted.
#
# Copyright (c) 2026, harbor_orm authors
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use HarborTAP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $schema = slurp_file("$FindBin::RealBin/../demo/schema.sql");

# The primary's sweeper is paused, so that expired holds reach the standby
# unswept; the standby's own configuration turns it on for after promotion.
my $primary = harbor_node(
	'primary',
	allows_streaming => 1,
	conf => "harbor_orm.sweeper_databases = 'postgres'\nharbor_orm.sweeper_enabled = off");
$primary->start;
$primary->safe_psql(
	'postgres', qq{
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
$schema
INSERT INTO brands (name) VALUES ('Anchor'), ('Bosun'), ('Compass');
INSERT INTO products (sku, name, price_cents, brand_id, created_at)
SELECT 'SKU-' || g, 'product ' || g, 100 * g, 1 + g % 3, '2026-01-01'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 12) g;
INSERT INTO variants (product_id, size, stock_qty)
SELECT p, s, (p * 7 + length(s)) % 11 FROM generate_series(1, 12) p, unnest(ARRAY['S', 'M', 'XL']) s;
INSERT INTO tags (label) VALUES ('new'), ('sale'), ('limited');
INSERT INTO product_tags SELECT p, 1 + p % 3 FROM generate_series(1, 12) p;
INSERT INTO product_tags SELECT p, 1 + (p + 1) % 3 FROM generate_series(1, 12, 2) p;
SELECT harbor.reflect('public');
SELECT harbor.register_relationship('variants', 'item', 'products', '{product_id}');
SELECT harbor.enable_stock('variants', 'stock_qty');
CREATE TABLE t_initial AS SELECT id, stock_qty FROM variants;
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', "harbor_orm.sweeper_enabled = on\n");
$standby->start;
$primary->wait_for_catchup($standby);

# ---- the loader answers on the standby exactly as on the primary
my @reads = (
	q{SELECT harbor.load('products', ARRAY[3, 1, 2, 99, 12], '{brand, variants, tags}')},
	q{SELECT harbor.get('variants', 5, '{product.brand, product.tags, item}')},
	q{SELECT harbor.get('products', 7)},
	q{SELECT harbor.find('variants', '{"stock_qty": {"lt": 5}}', '{product.brand}', order_by => '{stock_qty, id desc}', lim => 10)},
	q{SELECT harbor.find('brands', '{}', '{products.variants, products.tags}', order_by => '{name}')},
	q{SELECT harbor.find('tags', '{"label": {"in": ["new", "sale"]}}', '{products}')},
	q{SELECT harbor.describe('products')},
	q{SELECT string_agg(format('%s %s %s %s', model, name, kind, target), E'\n' ORDER BY model, name, target) FROM harbor.relationships WHERE NOT ambiguous});
for my $sql (@reads)
{
	my $want = $primary->safe_psql('postgres', $sql);
	my $got = $standby->safe_psql('postgres', $sql);
	ok(length($want) > 2, "primary answers: $sql");
	is($got, $want, "standby answers as the primary: $sql");
}

# ---- expired holds on the standby: not swept, no error loop
$primary->safe_psql(
	'postgres', q{
SELECT harbor.reserve_stock(id, 1, 'short-' || id, '1 second') FROM variants WHERE id BETWEEN 1 AND 5 AND stock_qty > 0;
SELECT harbor.reserve_stock(id, 1, 'long-' || id, '1 hour') FROM variants WHERE id BETWEEN 6 AND 8 AND stock_qty > 0;
});
my $short = $primary->safe_psql('postgres',
	"SELECT count(*) FROM harbor.stock_reservations WHERE order_id LIKE 'short-%'");
ok($short > 0, "primary holds $short short holds");
$primary->wait_for_catchup($standby);

my $expired_active = "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND expires_at < now()";
ok( wait_until(30, sub { $standby->safe_psql('postgres', $expired_active) eq $short }),
	'the short holds have expired on the standby');
# A few sweep intervals (1 s) during which nothing may happen.
sleep 3;
is($standby->safe_psql('postgres', $expired_active), $short, 'the standby did not sweep them');
is($standby->safe_psql('postgres', "SELECT count(*) FROM harbor.stock_reservations WHERE status = 'expired'"),
	'0', 'no hold expired on the standby');

my $standby_log = slurp_file($standby->logfile);
my @harbor_errors = grep { /(ERROR|FATAL|PANIC)/ } split /\n/, $standby_log;
is(join("\n", @harbor_errors), '', 'the standby logged no error');
# Lines the server wrote on its own (not in answer to this script's
# statements) that mention harbor: none is expected before promotion, a
# loop would show as many.
my @harbor_lines = grep { /harbor/ && !/002_standby\.pl/ } split /\n/, $standby_log;
cmp_ok(scalar(@harbor_lines), '<=', 2, "the standby's log has no repeated harbor lines")
  or diag(join("\n", @harbor_lines[0 .. ($#harbor_lines < 9 ? $#harbor_lines : 9)]));

# A write on the standby is the server's read-only error, nothing worse.
my $s = harbor_session($standby);
my $r = harbor_call($s, q{SELECT harbor.reserve_stock(1, 1, 'on-standby')});
is($r->{sqlstate}, '25006', 'reserve_stock on the standby: read-only transaction (25006)')
  or diag($r->{err});
$r = harbor_call($s, q{SELECT harbor.sweep_expired()});
is($r->{sqlstate}, '25006', 'sweep_expired on the standby: read-only transaction (25006)')
  or diag($r->{err});
$s->quit;

# ---- promotion: the new primary's sweeper returns the expired holds
$primary->stop('fast');
$standby->promote;
ok( wait_until(
		60,
		sub {
			$standby->safe_psql('postgres',
				"SELECT count(*) FROM harbor.stock_reservations WHERE status = 'expired'") eq $short;
		}),
	'after promotion the sweeper expired the short holds');
is($standby->safe_psql('postgres', $expired_active), '0', 'no expired hold left active');
my $long = $standby->safe_psql('postgres',
	"SELECT count(*) FROM harbor.stock_reservations WHERE order_id LIKE 'long-%' AND status = 'active'");
ok($long > 0, "unexpired holds are kept ($long)");
is(ledger_problems($standby, 'postgres', 'variants', 'variants'), '', 'the ledger balances after promotion');
$standby->stop;

# ---- synchronous replication: no acknowledged reservation lost in failover
my $sync_primary = harbor_node('sync_primary', allows_streaming => 1);
$sync_primary->start;
$sync_primary->safe_psql(
	'postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE items (id int PRIMARY KEY, stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO items SELECT g, 1000 FROM generate_series(1, 10) g;
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');
CREATE TABLE t_initial AS SELECT id, stock_qty FROM items;
});
$sync_primary->backup('base');
my $sync_standby = PostgreSQL::Test::Cluster->new('sync_standby');
$sync_standby->init_from_backup($sync_primary, 'base', has_streaming => 1);
$sync_standby->start;
$sync_primary->append_conf('postgresql.conf',
	"synchronous_standby_names = 'sync_standby'\nsynchronous_commit = on\n");
$sync_primary->reload;
ok( $sync_primary->poll_query_until(
		'postgres',
		"SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'sync_standby'"),
	'the standby is synchronous');

# Each statement commits on its own; when the session has its answer, every
# one of them is acknowledged.
my $n = 300;
my $batch = join("\n",
	map { "SELECT 'ack ' || order_id FROM harbor.reserve_stock(" . (1 + $_ % 10) . ", 1, 'sync-$_');" } 1 .. $n);
my $sess = harbor_session($sync_primary);
$r = harbor_call($sess, $batch);
my @acked = ($r->{out} =~ /^ack (sync-\d+)$/mg);
is(scalar(@acked), $n, "$n reservations acknowledged") or diag($r->{err});
$sync_primary->stop('immediate');
$sess->quit;
$sync_standby->promote;
is( $sync_standby->safe_psql('postgres',
		"SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active' AND order_id LIKE 'sync-%'"),
	$n,
	'every acknowledged hold is on the promoted standby');
is(ledger_problems($sync_standby, 'postgres', 'items', 'items'), '', 'the ledger balances there');
$sync_standby->stop;

done_testing();
