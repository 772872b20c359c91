/*-------------------------------------------------------------------------
 *
 * delayproxy.c
 *		A TCP proxy on loopback that delays every byte by a fixed time in
 *		each direction, to emulate the round trip between an application
 *		server and its database (the kernel here has no netem).
 *
 * Bench-only code.  One process, one thread, epoll.  Each chunk read from
 * either side is stamped "due = now + delay" and appended to one global
 * queue; as the delay is the same for every chunk, that queue is ordered by
 * due time, so its head is the next deadline.  A timerfd armed (absolute,
 * CLOCK_MONOTONIC, nanoseconds) at the head's due time wakes the loop: no
 * busy spinning, and sub-millisecond delays that epoll_wait's millisecond
 * timeout could not express.  A released chunk goes to its direction's
 * output buffer and is written as far as the socket takes it; the rest waits
 * for EPOLLOUT (partial writes).  A direction whose output backs up past
 * MAX_PENDING stops reading its source until it drains (back pressure).  An
 * end of stream travels as a chunk too, so it arrives after the data before
 * it, and becomes shutdown(SHUT_WR) on the other side.
 *
 *	delayproxy -l LISTEN_PORT -t TARGET_PORT [-d MICROSECONDS_EACH_WAY]
 *
 * Both addresses are 127.0.0.1: the proxy listens and connects on loopback
 * only.  It prints "ready" on stdout once listening and runs until SIGTERM
 * or SIGINT.
 *
 * Copyright (c) 2026, harbor_orm contributors
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE	65536
#define MAX_PENDING	(4 * 1024 * 1024)
#define MAX_EVENTS	64

struct conn;

/* One direction of a connection: bytes read from src are written to dst. */
typedef struct dir
{
	struct conn *conn;
	int			src;
	int			dst;
	char	   *out;			/* released, not yet written */
	size_t		out_len;
	size_t		out_off;
	size_t		out_cap;
	size_t		queued;			/* bytes read but not yet released */
	int			eof_read;		/* src reached end of stream */
	int			eof_released;	/* ... and that end has been released */
	int			shut;			/* dst shut down for writing */
} dir;

/* An fd registered with epoll, and which directions it reads and writes. */
typedef struct endpoint
{
	struct conn *conn;
	int			fd;
	dir		   *reads;			/* direction whose src is this fd */
	dir		   *writes;			/* direction whose dst is this fd */
	uint32_t	events;			/* current epoll interest */
	int			parked;			/* hung up with nothing to do: out of epoll */
} endpoint;

typedef struct conn
{
	endpoint	client;
	endpoint	server;
	dir			up;				/* client -> server */
	dir			down;			/* server -> client */
	int			dead;
	int			buried;			/* on the graveyard list */
	long		chunks;			/* chunks of this conn in the queue */
	struct conn *next_dead;
} conn;

typedef struct chunk
{
	struct chunk *next;
	uint64_t	due;
	dir		   *d;
	size_t		len;			/* 0: end of stream */
	char		data[];
} chunk;

static int	epfd;
static int	tfd;
static uint64_t delay_ns = 250000;
static chunk *q_head;
static chunk *q_tail;
static int	timer_armed_for_head;
static volatile sig_atomic_t stop;
static conn *graveyard;			/* freed after each epoll batch */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

static void
set_nonblock(int fd)
{
	int			fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl");
}

static void
arm_timer(void)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (q_head)
	{
		/* 0 would disarm: an already-due head fires one ns after boot */
		uint64_t	due = q_head->due ? q_head->due : 1;

		its.it_value.tv_sec = due / 1000000000u;
		its.it_value.tv_nsec = due % 1000000000u;
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("timerfd_settime");
	timer_armed_for_head = q_head != NULL;
}

/* Recompute an endpoint's epoll interest from its directions' state. */
static void
update_interest(endpoint *ep)
{
	uint32_t	ev = 0;
	struct epoll_event e;

	if (ep->conn->dead || ep->parked)
		return;
	if (ep->reads && !ep->reads->eof_read &&
		ep->reads->out_len - ep->reads->out_off + ep->reads->queued < MAX_PENDING)
		ev |= EPOLLIN;
	if (ep->writes && ep->writes->out_len > ep->writes->out_off)
		ev |= EPOLLOUT;
	if (ev == ep->events)
		return;
	e.events = ev;
	e.data.ptr = ep;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, ep->fd, &e) < 0)
		die("epoll_ctl mod");
	ep->events = ev;
}

static void
update_conn(conn *c)
{
	update_interest(&c->client);
	update_interest(&c->server);
}

static void
kill_conn(conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	close(c->client.fd);		/* close removes the fds from epoll */
	close(c->server.fd);
	free(c->up.out);
	free(c->down.out);
	c->up.out = c->down.out = NULL;
}

/*
 * A dead connection with nothing queued is freed after the current epoll
 * batch, which may still hold events that point at it.
 */
static void
maybe_free(conn *c)
{
	if (c->dead && c->chunks == 0 && !c->buried)
	{
		c->buried = 1;
		c->next_dead = graveyard;
		graveyard = c;
	}
}

/* Write what a direction has released; shut dst down after a released EOF. */
static void
flush_dir(dir *d)
{
	while (d->out_len > d->out_off)
	{
		ssize_t		n = send(d->dst, d->out + d->out_off, d->out_len - d->out_off,
							 MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			kill_conn(d->conn);
			return;
		}
		d->out_off += (size_t) n;
	}
	if (d->out_off == d->out_len)
		d->out_off = d->out_len = 0;
	if (d->eof_released && d->out_len == 0 && !d->shut)
	{
		shutdown(d->dst, SHUT_WR);
		d->shut = 1;
	}
	if (d->conn->up.shut && d->conn->down.shut)
		kill_conn(d->conn);
}

static void
release(chunk *ch)
{
	dir		   *d = ch->d;
	conn	   *c = d->conn;

	c->chunks--;
	if (!c->dead)
	{
		d->queued -= ch->len;
		if (ch->len == 0)
			d->eof_released = 1;
		else
		{
			if (d->out_len + ch->len > d->out_cap)
			{
				size_t		cap = d->out_cap ? d->out_cap : READ_SIZE;

				while (cap < d->out_len + ch->len)
					cap *= 2;
				d->out = realloc(d->out, cap);
				if (!d->out)
					die("realloc");
				d->out_cap = cap;
			}
			memcpy(d->out + d->out_len, ch->data, ch->len);
			d->out_len += ch->len;
		}
		flush_dir(d);
		if (!c->dead)
			update_conn(c);
	}
	free(ch);
	maybe_free(c);
}

static void
enqueue(dir *d, const char *buf, size_t len)
{
	chunk	   *ch = malloc(sizeof(chunk) + len);

	if (!ch)
		die("malloc");
	ch->next = NULL;
	ch->due = now_ns() + delay_ns;
	ch->d = d;
	ch->len = len;
	memcpy(ch->data, buf, len);
	d->queued += len;
	d->conn->chunks++;
	if (delay_ns == 0)
	{
		release(ch);
		return;
	}
	if (q_tail)
		q_tail->next = ch;
	else
		q_head = ch;
	q_tail = ch;
	if (!timer_armed_for_head)
		arm_timer();
}

static void
on_timer(void)
{
	uint64_t	expirations;
	uint64_t	t = now_ns();

	if (read(tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		die("read timerfd");
	while (q_head && q_head->due <= t)
	{
		chunk	   *ch = q_head;

		q_head = ch->next;
		if (!q_head)
			q_tail = NULL;
		release(ch);
	}
	arm_timer();
}

static void
on_readable(dir *d)
{
	char		buf[READ_SIZE];
	conn	   *c = d->conn;
	ssize_t		n = recv(d->src, buf, sizeof(buf), 0);

	if (n < 0)
	{
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		kill_conn(c);
		maybe_free(c);
		return;
	}
	if (n == 0)
		d->eof_read = 1;
	c->chunks++;				/* hold c while enqueue may release */
	enqueue(d, buf, (size_t) n);
	c->chunks--;
	if (!c->dead)
		update_conn(c);
	maybe_free(c);
}

static void
add_fd(endpoint *ep, uint32_t events)
{
	struct epoll_event e;

	e.events = events;
	e.data.ptr = ep;
	ep->events = events;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, ep->fd, &e) < 0)
		die("epoll_ctl add");
}

static void
on_accept(int lfd, struct sockaddr_in *target)
{
	for (;;)
	{
		int			one = 1;
		int			cfd = accept(lfd, NULL, NULL);
		int			sfd;
		conn	   *c;

		if (cfd < 0)
		{
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;				/* EAGAIN, or out of fds: try at the next event */
		}
		sfd = socket(AF_INET, SOCK_STREAM, 0);
		if (sfd < 0 || connect(sfd, (struct sockaddr *) target, sizeof(*target)) < 0)
		{
			perror("connect to target");
			if (sfd >= 0)
				close(sfd);
			close(cfd);
			continue;
		}
		set_nonblock(cfd);
		set_nonblock(sfd);
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(conn));
		if (!c)
			die("calloc");
		c->up.conn = c->down.conn = c;
		c->up.src = c->down.dst = cfd;
		c->up.dst = c->down.src = sfd;
		c->client = (endpoint) {c, cfd, &c->up, &c->down, 0, 0};
		c->server = (endpoint) {c, sfd, &c->down, &c->up, 0, 0};
		add_fd(&c->client, EPOLLIN);
		add_fd(&c->server, EPOLLIN);
	}
}

static int
parse_port(const char *s)
{
	char	   *end;
	long		v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v <= 0 || v > 65535)
	{
		fprintf(stderr, "bad port: %s\n", s);
		exit(2);
	}
	return (int) v;
}

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	int			listen_port = 0;
	int			target_port = 0;
	int			opt;
	int			lfd;
	int			one = 1;
	struct sockaddr_in la;
	struct sockaddr_in ta;
	static endpoint listener;
	static endpoint timer;
	struct epoll_event e;

	while ((opt = getopt(argc, argv, "l:t:d:")) != -1)
	{
		switch (opt)
		{
			case 'l':
				listen_port = parse_port(optarg);
				break;
			case 't':
				target_port = parse_port(optarg);
				break;
			case 'd':
				delay_ns = (uint64_t) strtoull(optarg, NULL, 10) * 1000u;
				break;
			default:
				fprintf(stderr, "usage: %s -l LISTEN_PORT -t TARGET_PORT [-d MICROSECONDS]\n", argv[0]);
				return 2;
		}
	}
	if (!listen_port || !target_port)
	{
		fprintf(stderr, "usage: %s -l LISTEN_PORT -t TARGET_PORT [-d MICROSECONDS]\n", argv[0]);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	memset(&la, 0, sizeof(la));
	la.sin_family = AF_INET;
	la.sin_port = htons((uint16_t) listen_port);
	la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ta = la;
	ta.sin_port = htons((uint16_t) target_port);

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *) &la, sizeof(la)) < 0)
		die("bind");
	if (listen(lfd, 1024) < 0)
		die("listen");
	set_nonblock(lfd);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (epfd < 0 || tfd < 0)
		die("epoll_create1/timerfd_create");
	listener.fd = lfd;
	e.events = EPOLLIN;
	e.data.ptr = &listener;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e) < 0)
		die("epoll_ctl listener");
	timer.fd = tfd;
	e.data.ptr = &timer;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &e) < 0)
		die("epoll_ctl timer");

	printf("ready\n");
	fflush(stdout);

	while (!stop)
	{
		struct epoll_event evs[MAX_EVENTS];
		int			n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++)
		{
			endpoint   *ep = evs[i].data.ptr;

			if (ep == &listener)
				on_accept(lfd, &ta);
			else if (ep == &timer)
				on_timer();
			else
			{
				conn	   *c = ep->conn;

				/*
				 * An earlier event of this batch may have killed (and, with
				 * nothing queued, freed) this connection: hold it.
				 */
				if (c->dead)
					continue;
				if (evs[i].events & EPOLLERR)
				{
					kill_conn(c);
					maybe_free(c);
					continue;
				}
				if (evs[i].events & EPOLLOUT)
				{
					flush_dir(ep->writes);
					if (!c->dead)
						update_conn(c);
				}
				if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLHUP)) &&
					(ep->events & EPOLLIN))
					on_readable(ep->reads);
				else if (!c->dead && (evs[i].events & EPOLLHUP) && ep->events == 0)
				{
					/*
					 * Both ways closed and nothing to write here: epoll would
					 * report the hang-up again and again.  What is still
					 * queued for the other side goes on; the connection is
					 * closed when that direction is shut too.
					 */
					if (epoll_ctl(epfd, EPOLL_CTL_DEL, ep->fd, NULL) < 0)
						die("epoll_ctl del");
					ep->parked = 1;
				}
				maybe_free(c);
			}
		}
		while (graveyard)
		{
			conn	   *c = graveyard;

			graveyard = c->next_dead;
			free(c);
		}
	}
	return 0;
}
