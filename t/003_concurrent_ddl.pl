# 003_concurrent_ddl.pl
#	  Concurrent DDL against sessions whose caches are warm in every
#	  capability: the loader (load, get, find), reservations (reserve_stock,
#	  stock_status), change notifications (writes to a model with
#	  enable_change_notify) and the registry (describe).  After each DDL --
#	  a column type change, a table rename, a column rename, a dropped
#	  column, a dropped table, SET SCHEMA -- every call in the warm sessions
#	  gives the answer a fresh session gives, or a clean error (an ERROR whose
#	  SQLSTATE is not XX000); the stock ledger balances; and the server never
#	  crashed: no "terminated by signal" in its log and the same postmaster.
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

my $node = harbor_node('ddl');
$node->start;
my $postmaster = postmaster_pid($node);
$node->safe_psql('postgres', 'CREATE EXTENSION harbor_orm');

# One catalog per scenario, built afresh (names are per scenario so that a
# failed drop cannot leak into the next).
sub build_catalog
{
	$node->safe_psql(
		'postgres', q{
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS moved CASCADE;
DROP TABLE IF EXISTS product_tags, tags, variants, products, brands,
                     goods, skus, t_initial CASCADE;
DELETE FROM harbor.stock_reservations;
CREATE SCHEMA moved;
CREATE TABLE brands (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL,
                       brand_id int REFERENCES brands (id));
CREATE TABLE variants (id int PRIMARY KEY, product_id int NOT NULL REFERENCES products (id),
                       size varchar(8) NOT NULL, stock_qty int NOT NULL CHECK (stock_qty >= 0));
CREATE TABLE tags (id int PRIMARY KEY, label text NOT NULL);
CREATE TABLE product_tags (product_id int REFERENCES products (id), tag_id int REFERENCES tags (id),
                           PRIMARY KEY (product_id, tag_id));
INSERT INTO brands VALUES (1, 'Anchor'), (2, 'Bosun');
INSERT INTO products SELECT g, 'product ' || g, 100 * g, 1 + g % 2 FROM generate_series(1, 6) g;
INSERT INTO variants SELECT 10 * p + s, p, (ARRAY['S', 'M', 'L'])[s], 20 FROM generate_series(1, 6) p, generate_series(1, 3) s;
INSERT INTO tags VALUES (1, 'new'), (2, 'sale');
INSERT INTO product_tags SELECT g, 1 + g % 2 FROM generate_series(1, 6) g;
SELECT harbor.reflect('public');
SELECT harbor.enable_stock('variants');
SELECT harbor.enable_change_notify('products');
SELECT harbor.enable_change_notify('variants');
CREATE TABLE t_initial AS SELECT id, stock_qty FROM variants;
});
}

# The calls of a warm session, by capability.  %T maps the original table
# names to their names after the DDL, for the plain SQL writes.
my @calls = (
	[ load => q{SELECT harbor.load('products', ARRAY[1, 2, 3], '{brand, variants, tags}')} ],
	[ get => q{SELECT harbor.get('products', 2, '{variants}')} ],
	[ get_variant => q{SELECT harbor.get('variants', 21, '{product.brand}')} ],
	[ find => q{SELECT harbor.find('variants', '{"stock_qty": {"gte": 0}}', '{product}', order_by => '{id}', lim => 4)} ],
	[ find_name => q{SELECT harbor.find('products', '{"name": {"like": "product%"}}', order_by => '{id}', lim => 2)} ],
	[ describe => q{SELECT harbor.describe('products')} ],
	[ describe_variants => q{SELECT harbor.describe('variants')} ],
	[ status => q{SELECT * FROM harbor.stock_status(21, 'variants')} ],
	[ reserve => q{SELECT item_id, qty, status FROM harbor.reserve_stock(21, %QTY%, 'ddl-%SESSION%', model => 'variants')} ],
	[ write_products => q{UPDATE %products% SET price_cents = price_cents + 1 WHERE id = 3 RETURNING id} ],
	[ write_variants => q{UPDATE %variants% SET stock_qty = stock_qty WHERE id = 32 RETURNING id} ],);
# Calls whose answer must equal a fresh session's (the others change state).
my %compare = map { $_ => 1 } qw(load get get_variant find find_name describe describe_variants status);

my @scenarios = (
	[ 'type change' => ['ALTER TABLE products ALTER COLUMN name TYPE int USING length(name)',
			'ALTER TABLE variants ALTER COLUMN size TYPE int USING length(size)'], {} ],
	[ 'stock column type change' => ['ALTER TABLE variants ALTER COLUMN stock_qty TYPE bigint'], {} ],
	[ 'table rename' => ['ALTER TABLE products RENAME TO goods', 'ALTER TABLE variants RENAME TO skus'],
		{ products => 'goods', variants => 'skus' } ],
	[ 'column rename' => ['ALTER TABLE products RENAME COLUMN name TO title',
			'ALTER TABLE variants RENAME COLUMN size TO fit'], {} ],
	[ 'drop column' => ['ALTER TABLE products DROP COLUMN name', 'ALTER TABLE variants DROP COLUMN size'], {} ],
	[ 'drop table' => ['DROP TABLE product_tags', 'DROP TABLE tags'], {} ],
	[ 'drop stock table' => ['DROP TABLE variants'], { variants => undef } ],
	[ 'set schema' => ['ALTER TABLE products SET SCHEMA moved', 'ALTER TABLE variants SET SCHEMA moved'],
		{ products => 'moved.products', variants => 'moved.variants' } ],);

my %failures;
for my $sc (@scenarios)
{
	my ($name, $ddl, $renamed) = @$sc;
	build_catalog();
	my $log_offset = -s $node->logfile;

	# Two warm sessions: every capability used once (and with LISTEN, so
	# that the notify path is warm too).
	my @sessions = map { harbor_session($node) } 1 .. 2;
	for my $i (0 .. $#sessions)
	{
		harbor_call($sessions[$i], 'LISTEN harbor_changes');
		for my $c (@calls)
		{
			my $sql = expand($c->[1], $i, 1, {});
			my $r = harbor_call($sessions[$i], $sql);
			ok($r->{ok}, "$name: warm-up $c->[0] in session $i") or diag($r->{err});
		}
	}

	$node->safe_psql('postgres', join(";\n", @$ddl));

	for my $i (0 .. $#sessions)
	{
		for my $c (@calls)
		{
			my ($call, $template) = @$c;
			# a write to a table that was dropped is not a harbor call
			next if $call =~ /^write_(\w+)/ && exists $renamed->{$1} && !defined $renamed->{$1};
			my $sql = expand($template, $i, 2, $renamed);
			my $r = harbor_call($sessions[$i], $sql);
			my $what = "$name: $call in warm session $i";
			if ($r->{lost})
			{
				fail("$what: the connection was lost (server crash?)");
				diag($r->{err});
				$failures{$name}++;
				next;
			}
			if (!$r->{ok})
			{
				isnt($r->{sqlstate}, 'XX000', "$what: a clean error ($r->{sqlstate})")
				  or do { diag($r->{err}); $failures{$name}++ };
				if ($compare{$call})
				{
					# the fresh session must not succeed where the warm one failed
					my ($rc) = $node->psql('postgres', $sql);
					ok($rc != 0, "$what: a fresh session fails as well")
					  or do { diag("warm session: $r->{err}"); $failures{$name}++ };
				}
				next;
			}
			if ($compare{$call})
			{
				my ($rc, $want, $err) = $node->psql('postgres', $sql);
				is($r->{out}, $want, "$what: the answer a fresh session gives")
				  or $failures{$name}++;
			}
			elsif ($call =~ /^write_(\w+)/)
			{
				# the session LISTENs: its own committed write is announced
				my $model = $1;
				ok((grep { /"model": "$model"/ } @{ $r->{notifications} }),
					"$what: succeeded and notified")
				  or do { diag("notifications: @{ $r->{notifications} }"); $failures{$name}++ };
			}
			else
			{
				pass("$what: succeeded");
			}
		}
	}
	$_->quit for @sessions;

	my $log = log_since($node, $log_offset);
	is(join("\n", crash_lines($log)), '', "$name: no crash in the server log")
	  or $failures{$name}++;
	my @internal = grep { /\] XX000 / } split /\n/, $log;
	is(join("\n", @internal), '', "$name: no internal error (XX000) in the log")
	  or $failures{$name}++;
	is(postmaster_pid($node), $postmaster, "$name: the postmaster is the same");
	ok($node->poll_query_until('postgres', 'SELECT true'), "$name: the server accepts connections");
	unless (exists $renamed->{variants} && !defined $renamed->{variants})
	{
		my $stock_table = $renamed->{variants} // 'variants';
		is(ledger_problems($node, 'postgres', 'variants', $stock_table), '', "$name: the ledger balances")
		  or $failures{$name}++;
	}
}

note('scenarios with failures: '
	  . join(', ', map { "$_ ($failures{$_})" } sort keys %failures))
  if %failures;

done_testing();

# The SQL of a call for session $i, round $round (reservation qty differs
# between rounds so that the second call moves stock).
sub expand
{
	my ($sql, $i, $round, $renamed) = @_;
	$sql =~ s/%SESSION%/$i/g;
	$sql =~ s/%QTY%/$round/g;
	$sql =~ s/%(\w+)%/$renamed->{$1} \/\/ $1/ge;
	return $sql;
}
