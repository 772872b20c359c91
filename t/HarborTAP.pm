# HarborTAP.pm
#	  Helpers shared by harbor_orm's TAP tests (t/*.pl): nodes with the
#	  library preloaded, psql sessions that report SQLSTATEs, and checks of
#	  the server log for crashes.
#
# Copyright (c) 2026, harbor_orm authors
package HarborTAP;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(harbor_node harbor_session harbor_call wait_until
  postmaster_pid log_since crash_lines ledger_problems);

# A node with harbor_orm preloaded, every log line with its SQLSTATE (%e),
# statements logged only when they fail, and a fast sweeper.  %params go to init(); conf => '...' adds
# settings.
sub harbor_node
{
	my ($name, %params) = @_;
	my $conf = delete $params{conf} // '';
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%params);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'harbor_orm'
harbor_orm.sweep_interval = '1s'
log_statement = none
log_line_prefix = '%m [%p] %e %q%a '
log_min_error_statement = error
max_connections = 40
$conf
});
	return $node;
}

# A background psql session that goes on after errors and reports each
# error's SQLSTATE (VERBOSITY verbose).
sub harbor_session
{
	my ($node, $db) = @_;
	my $s = $node->background_psql($db // 'postgres', on_error_stop => 0);
	$s->query('\set VERBOSITY verbose');
	$s->{stderr} = '';
	return $s;
}

# Runs one statement in a session.  Returns a hash: ok (no error), out,
# err (stderr), sqlstate (of the first ERROR, 'XX000' included), lost (the
# connection died under the statement: a crash), notifications (payloads of
# the notifications psql printed with the answer).
sub harbor_call
{
	my ($s, $sql) = @_;
	my %r = (ok => 0, out => '', err => '', sqlstate => '', lost => 0);
	my $out;
	if (!eval { $out = $s->query($sql); 1 })
	{
		$r{err} = "psql died: $@";
		$r{lost} = 1;
		return \%r;
	}
	$r{out} = $out // '';
	# notifications psql prints for a LISTENing session are not the answer
	$r{notifications} = [ $r{out} =~ /^Asynchronous notification "[^"]*" with payload "(.*)" received from server process with PID \d+\.$/mg ];
	$r{out} =~ s/^Asynchronous notification .* received from server process with PID \d+\.\n?//mg;
	$r{out} =~ s/\n\z//;
	$r{err} = $s->{stderr};
	$s->{stderr} = '';
	$r{lost} = 1
	  if $r{err} =~
	  /server closed the connection|connection to the server was lost|terminating connection because of crash/;
	if ($r{err} =~ /(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):/)
	{
		$r{sqlstate} = $1;
	}
	$r{ok} = ($r{err} !~ /(?:ERROR|FATAL|PANIC):/ && !$r{lost}) ? 1 : 0;
	return \%r;
}

# Polls $cond->() every 100 ms until it is true or $secs have passed;
# returns whether it became true.
sub wait_until
{
	my ($secs, $cond) = @_;
	my $deadline = time() + $secs;
	while (1)
	{
		return 1 if $cond->();
		return 0 if time() >= $deadline;
		usleep(100_000);
	}
}

# The postmaster's pid from postmaster.pid (changes if the node restarts).
sub postmaster_pid
{
	my ($node) = @_;
	my $f = $node->data_dir . '/postmaster.pid';
	return '' unless -e $f;
	open my $fh, '<', $f or return '';
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return $pid;
}

# The server log from byte $offset on.
sub log_since
{
	my ($node, $offset) = @_;
	return substr(slurp_file($node->logfile), $offset // 0);
}

# Lines of a log text that show a crash: a backend killed by a signal, a
# PANIC, or the postmaster reinitialising.
sub crash_lines
{
	my ($text) = @_;
	return grep { /terminated by signal|PANIC:|all server processes terminated|server process .* was terminated/ }
	  split /\n/, $text;
}

# Everything wrong with the stock ledger of stock model $model whose table
# $table had the stock kept in t_initial(id, stock_qty): check_stock()'s
# problems, then every item whose stock + active + confirmed differs from
# its initial stock.  Empty when the books balance.
sub ledger_problems
{
	my ($node, $db, $model, $table) = @_;
	return $node->safe_psql(
		$db, qq{
SELECT 'check_stock: ' || model || ' ' || item_id || ' ' || problem FROM harbor.check_stock()
UNION ALL
SELECT format('item %s: stock %s + active %s + confirmed %s <> initial %s',
              i.id, s.stock_qty, coalesce(h.active, 0), coalesce(h.confirmed, 0), i.stock_qty)
  FROM t_initial i
  JOIN $table s ON s.id = i.id
  LEFT JOIN (SELECT item_id,
                    sum(qty) FILTER (WHERE status = 'active') AS active,
                    sum(qty) FILTER (WHERE status = 'confirmed') AS confirmed
               FROM harbor.stock_reservations WHERE model = '$model'
              GROUP BY item_id) h ON h.item_id = i.id
 WHERE s.stock_qty + coalesce(h.active, 0) + coalesce(h.confirmed, 0) <> i.stock_qty
});
}

1;
