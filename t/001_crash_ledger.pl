# 001_crash_ledger.pl
#	  Immediate shutdown under reservation load, twice: after each restart
#	  the stock ledger balances (check_stock() is empty and, per item,
#	  stock + active + confirmed holds = the initial stock), the holds that
#	  expired meanwhile are swept back, and the books still balance.
#
# Copyright (c) 2026, harbor_orm authors
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use HarborTAP;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = harbor_node('crash', conf => "harbor_orm.sweeper_databases = 'postgres'");
$node->start;

$node->safe_psql(
	'postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION harbor_orm;
CREATE TABLE items (id int PRIMARY KEY, name text, stock_qty int NOT NULL CHECK (stock_qty >= 0));
INSERT INTO items SELECT g, 'item ' || g, 5000 FROM generate_series(1, 8) g;
SELECT harbor.register_model('items');
SELECT harbor.enable_stock('items');
CREATE TABLE t_initial AS SELECT id, stock_qty FROM items;
-- One client step: reserve (short TTLs, so that the sweeper works during
-- the load), reserve_many, confirm, release or restock.  Expected refusals are
-- swallowed so that pgbench keeps going; any other error ends the client.
CREATE FUNCTION t_step(item int, qty int, ord int, act int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o text := 'order-' || ord;
BEGIN
    IF act <= 5 THEN
        PERFORM harbor.reserve_stock(item, qty, o, make_interval(secs => 1 + act % 3));
    ELSIF act = 6 THEN
        PERFORM harbor.reserve_many(o, jsonb_build_array(
            jsonb_build_object('item_id', item, 'qty', qty),
            jsonb_build_object('item_id', 1 + item % 8, 'qty', 1)), interval '2 seconds');
    ELSIF act = 7 THEN
        PERFORM harbor.confirm_reservation(o);
    ELSIF act <= 9 THEN
        PERFORM harbor.release_reservation(o);
    ELSE
        -- a restock by a plain writer, in the books in the same transaction,
        -- so that confirmed holds never drain the stock during a long run
        UPDATE items SET stock_qty = stock_qty + 20 WHERE id = item;
        UPDATE t_initial SET stock_qty = stock_qty + 20 WHERE id = item;
    END IF;
EXCEPTION WHEN SQLSTATE 'HB001' OR SQLSTATE 'HB003' THEN
    NULL;
END $$;
});

my $script = $node->basedir . '/reserve.sql';
open my $fh, '>', $script or die $!;
print $fh <<'SQL';
\set item random(1, 8)
\set qty random(1, 3)
\set ord random(1, 400)
\set act random(1, 10)
SELECT t_step(:item, :qty, :ord, :act);
SQL
close $fh;

is(ledger_problems($node, 'postgres', 'items', 'items'), '', 'the ledger balances before the load');

for my $round (1 .. 2)
{
	my $before = postmaster_pid($node);
	my $log_offset = -s $node->logfile;
	my ($holds0, $expired0) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT count(*), count(*) FILTER (WHERE status = 'expired') FROM harbor.stock_reservations");
	my ($out, $err) = ('', '');
	my $bench = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '8', '-j', '2', '-T', '120', '-f', $script,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);

	# Load until there are holds in every state and the sweeper has expired
	# some of this round's holds, then stop with no checkpoint.
	my $state = '';
	my $busy = wait_until(
		90,
		sub {
			$state = $node->safe_psql(
				'postgres', qq{
SELECT format('new holds %s, confirmed %s, released %s, newly expired %s',
              count(*) - $holds0, count(*) FILTER (WHERE status = 'confirmed'),
              count(*) FILTER (WHERE status = 'released'),
              count(*) FILTER (WHERE status = 'expired') - $expired0),
       count(*) - $holds0 >= 500
       AND bool_or(status = 'confirmed') AND bool_or(status = 'released')
       AND count(*) FILTER (WHERE status = 'expired') > $expired0
  FROM harbor.stock_reservations});
			return $state =~ /\|t$/;
		});
	ok($busy, "round $round: load running with holds in every state and sweeps under way")
	  or diag($state);
	ok($bench->pumpable, "round $round: pgbench clients still running at the crash")
	  or diag("pgbench: $out $err");
	$node->stop('immediate');
	$bench->kill_kill;
	$bench->finish;
	# pgbench's errors from the crash itself are expected, nothing else.
	my @client_errors = grep { /ERROR/ && !/server closed|terminating connection|lost|shut down/ }
	  split /\n/, $err;
	is(join("\n", @client_errors), '', "round $round: no client got an error before the crash");
	is(join("\n", crash_lines(log_since($node, $log_offset))), '',
		"round $round: no crash during the load");

	$node->start;
	isnt(postmaster_pid($node), $before, "round $round: restarted");
	is(ledger_problems($node, 'postgres', 'items', 'items'), '',
		"round $round: after crash recovery the ledger balances");

	# Every hold left active expires within 3 s: the sweeper of the restarted
	# server puts it back, and the books still balance.
	my $swept = wait_until(
		60,
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM harbor.stock_reservations WHERE status = 'active'") eq '0';
		});
	ok($swept, "round $round: the restarted sweeper returned every expired hold");
	is(ledger_problems($node, 'postgres', 'items', 'items'), '',
		"round $round: after the sweeps the ledger balances");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM items WHERE stock_qty < 0'),
		'0', "round $round: nothing oversold");
}

my $errors = () = slurp_file($node->logfile) =~ /XX000/g;
is($errors, 0, 'no internal error (XX000) in the server log');

$node->stop;
done_testing();
