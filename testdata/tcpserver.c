// tcpserver: a TCP (or UDP) server for the inet socket tests, talking to
// a client outside the tree (the test).
//
// Protocol: tcpserver TRIGGER MODE [ARG]
//   tcp4, tcp6: listens on 127.0.0.1 (::1) port 0 (SO_REUSEADDR, backlog
//     7; tcp6 with IPV6_V6ONLY), prints "port N\n", accepts 4
//     connections, gives each TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE 77,
//     TCP_KEEPINTVL 13, TCP_KEEPCNT 4, SO_RCVTIMEO 5.25 s, SO_LINGER
//     {1, 3}, SO_SNDBUF 96 KiB, SO_RCVBUF 80 KiB then SO_BUF_LOCK
//     SOCK_SNDBUF_LOCK (the receive buffer autotuned again), and prints "ready\n". Then it serves:
//     every request line "N\n" on a connection gets the reply
//     "N <N*7> <padding of 600 x>\n", and "bulk N\n" the 400 replies to
//     N … N+399 (about 250 KiB: the client reading them slowly keeps
//     the server's send queue full); replies are written without
//     blocking as the socket takes them; after "pause\n" it reads nothing
//     more from that connection until TRIGGER exists (what the client
//     sends meanwhile waits in the receive queue). A connection accepted
//     later is served the same way. Once TRIGGER exists it checks (from inside)
//     every option above on the 4 first connections (and SO_BUF_LOCK:
//     the send buffer locked, the receive buffer autotuned) and the listener's
//     SO_REUSEADDR (and IPV6_V6ONLY), prints "OK\n" or "FAIL: ...\n",
//     and exits (0 or 1) once every connection was closed by the client.
//   udp ARG: a UDP socket bound to 127.0.0.1 port 0 and connected to
//     127.0.0.1 port ARG, SO_RCVBUF 64 KiB; prints "port N\nready\n";
//     echoes each datagram it receives back (send, connected), with
//     "echo:" in front; once TRIGGER exists it checks its binding, peer,
//     SO_RCVBUF and SO_BUF_LOCK, prints "OK\n" and exits 0. It also holds two TCP
//     sockets in state CLOSE (fds 3 and 4): one never bound, one IPv6
//     bound to a loopback port, checked too.
//   backlog: listens (port printed), never accepts; "ready" at once.
//   closewait: listens, accepts one connection, prints "ready" once the
//     peer closed it (it reads EOF... without reading: poll POLLRDHUP).
//   udpqueued ARG: as udp, but never reads.
//   netns: a UDP socket made in a new network namespace (the process
//     stays in its own).
// For the refused modes it exits 0 with "OK\n" once TRIGGER exists.
// With TCPSERVER_BALLAST_MB=N in its environment it first fills N MiB of
// memory (a dump then takes longer).
#define _GNU_SOURCE
#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72 /* Linux 5.14 */
#endif
#define SOCK_SNDBUF_LOCK 1
#define SOCK_RCVBUF_LOCK 2
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char *trigger;

static void die(const char *what)
{
	fprintf(stderr, "tcpserver: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int fails;
static struct timeval rcvtimeo; // as read back after setting it (jiffies)

static void bad(const char *what, int fd, long got, long want)
{
	printf("FAIL: %s on fd %d: %ld, want %ld\n", what, fd, got, want);
	fails++;
}

static int geti(int fd, int level, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, opt, &v, &l) < 0)
		return -1000 - errno;
	return v;
}

static void seti(int fd, int level, int opt, int v)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)) < 0)
		die("setsockopt");
}

static int triggered(void) { return access(trigger, F_OK) == 0; }

static int listener(int family)
{
	int l = socket(family, SOCK_STREAM, 0);
	if (l < 0)
		die("socket");
	seti(l, SOL_SOCKET, SO_REUSEADDR, 1);
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (family == AF_INET6) {
		seti(l, IPPROTO_IPV6, IPV6_V6ONLY, 1);
		struct sockaddr_in6 *a = (void *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	if (bind(l, (void *)&ss, len) < 0 || listen(l, 7) < 0)
		die("bind/listen");
	len = sizeof(ss);
	getsockname(l, (void *)&ss, &len);
	int port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	printf("port %d\n", port);
	fflush(stdout);
	return l;
}

#define MAXC 16
#define OUTCAP (8 << 20)

// conn is one accepted connection: its unparsed input and its output
// not written yet (written with MSG_DONTWAIT when the socket takes it).
struct conn {
	int fd;
	char buf[4096];
	int n;
	char *out;
	long head, tail;
	int paused; // "pause" read: the rest waits for the trigger
};

static void put(struct conn *c, const char *b, int n)
{
	if (c->tail + n > OUTCAP) {
		memmove(c->out, c->out + c->head, c->tail - c->head);
		c->tail -= c->head;
		c->head = 0;
	}
	if (c->tail + n > OUTCAP) {
		printf("FAIL: output buffer full\n");
		exit(1);
	}
	memcpy(c->out + c->tail, b, n);
	c->tail += n;
}

static void setopts(int c)
{
	seti(c, IPPROTO_TCP, TCP_NODELAY, 1);
	seti(c, SOL_SOCKET, SO_KEEPALIVE, 1);
	seti(c, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	seti(c, IPPROTO_TCP, TCP_KEEPINTVL, 13);
	seti(c, IPPROTO_TCP, TCP_KEEPCNT, 4);
	struct timeval tv = {5, 250000};
	if (setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		die("SO_RCVTIMEO");
	socklen_t l = sizeof(rcvtimeo);
	getsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rcvtimeo, &l);
	struct linger lg = {1, 3};
	if (setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		die("SO_LINGER");
	seti(c, SOL_SOCKET, SO_SNDBUF, 96 << 10);
	// A receive buffer given a size and then handed back to autotuning.
	seti(c, SOL_SOCKET, SO_RCVBUF, 80 << 10);
	seti(c, SOL_SOCKET, SO_BUF_LOCK, SOCK_SNDBUF_LOCK);
}

static void checkopts(int c)
{
	int want[][3] = {
		{IPPROTO_TCP, TCP_NODELAY, 1}, {SOL_SOCKET, SO_KEEPALIVE, 1}, {IPPROTO_TCP, TCP_KEEPIDLE, 77},
		{IPPROTO_TCP, TCP_KEEPINTVL, 13}, {IPPROTO_TCP, TCP_KEEPCNT, 4}, {SOL_SOCKET, SO_SNDBUF, 2 * (96 << 10)},
		{SOL_SOCKET, SO_REUSEADDR, 1}, // inherited from the listener
		// SO_SNDBUF set by the program locks it; the receive buffer
		// stays autotuned (SOCK_SNDBUF_LOCK only).
		{SOL_SOCKET, SO_BUF_LOCK, SOCK_SNDBUF_LOCK},
	};
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int v = geti(c, want[i][0], want[i][1]);
		if (v != want[i][2])
			bad("option", c, v, want[i][2]);
	}
	struct timeval tv;
	socklen_t l = sizeof(tv);
	getsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
	if (tv.tv_sec != rcvtimeo.tv_sec || tv.tv_usec != rcvtimeo.tv_usec || tv.tv_sec != 5)
		bad("SO_RCVTIMEO usec", c, tv.tv_sec * 1000000 + tv.tv_usec, rcvtimeo.tv_sec * 1000000 + rcvtimeo.tv_usec);
	struct linger lg;
	l = sizeof(lg);
	getsockopt(c, SOL_SOCKET, SO_LINGER, &lg, &l);
	if (lg.l_onoff != 1 || lg.l_linger != 3)
		bad("SO_LINGER", c, lg.l_onoff * 100 + lg.l_linger, 103);
}

static void serve(int family)
{
	int l = listener(family);
	static struct conn cs[MAXC];
	int nc = 0, first = 0;
	for (; nc < 4; nc++) {
		cs[nc].fd = accept(l, NULL, NULL);
		if (cs[nc].fd < 0)
			die("accept");
		cs[nc].out = malloc(OUTCAP);
		setopts(cs[nc].fd);
	}
	first = nc;
	printf("ready\n");
	fflush(stdout);
	int checked = 0, open = nc;
	char pad[601];
	memset(pad, 'x', 600);
	pad[600] = 0;
	for (;;) {
		if (!checked && triggered()) {
			for (int i = 0; i < first; i++)
				if (cs[i].fd >= 0)
					checkopts(cs[i].fd);
			if (geti(l, SOL_SOCKET, SO_REUSEADDR) != 1)
				bad("listener SO_REUSEADDR", l, geti(l, SOL_SOCKET, SO_REUSEADDR), 1);
			if (family == AF_INET6 && geti(l, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
				bad("listener IPV6_V6ONLY", l, geti(l, IPPROTO_IPV6, IPV6_V6ONLY), 1);
			printf(fails ? "FAIL\n" : "OK\n");
			fflush(stdout);
			checked = 1;
		}
		if (checked && open == 0)
			exit(fails ? 1 : 0);
		struct pollfd p[MAXC + 1];
		for (int i = 0; i < nc; i++)
			p[i] = (struct pollfd){.fd = cs[i].fd, .events = (cs[i].paused && !checked ? 0 : POLLIN) | (cs[i].tail > cs[i].head ? POLLOUT : 0)};
		p[nc] = (struct pollfd){.fd = l, .events = POLLIN};
		int r = poll(p, nc + 1, 10);
		if (r < 0 && errno != EINTR)
			die("poll");
		if (r <= 0)
			continue;
		if (p[nc].revents & POLLIN && nc < MAXC) {
			cs[nc].fd = accept(l, NULL, NULL);
			if (cs[nc].fd >= 0) {
				cs[nc].n = 0;
				cs[nc].out = malloc(OUTCAP);
				nc++;
				open++;
			}
		}
		for (int i = 0; i < nc; i++) {
			struct conn *c = &cs[i];
			if (c->fd < 0)
				continue;
			if (p[i].revents & POLLOUT && c->tail > c->head) {
				int w = send(c->fd, c->out + c->head, c->tail - c->head, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (w < 0 && errno != EAGAIN && errno != EINTR) {
					if (!checked) {
						printf("FAIL: send on fd %d: %s\n", c->fd, strerror(errno));
						fflush(stdout);
						exit(1);
					}
					// The client closed it at the end with
					// replies unread (a reset then is right).
					close(c->fd);
					c->fd = -1;
					open--;
					continue;
				}
				if (w > 0)
					c->head += w;
			}
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) || (c->paused && !checked))
				continue;
			usleep(300); // let requests queue up
			int k = read(c->fd, c->buf + c->n, sizeof(c->buf) - c->n);
			if (k <= 0) {
				if (k < 0 && !checked) // at the end the client may close with replies unread
					printf("FAIL: read on fd %d: %s\n", c->fd, strerror(errno)), fails++;
				close(c->fd);
				c->fd = -1;
				open--;
				continue;
			}
			c->n += k;
			char *nl;
			while ((nl = memchr(c->buf, '\n', c->n))) {
				*nl = 0;
				char out[800];
				if (!strcmp(c->buf, "pause")) {
					c->paused = 1;
				} else if (!strncmp(c->buf, "bulk ", 5)) {
					// "bulk FROM": 400 lines "FROM+i <padding>\n".
					long from = atol(c->buf + 5);
					for (long v = from; v < from + 400; v++) {
						int m = snprintf(out, sizeof(out), "%ld %ld %s\n", v, v * 7, pad);
						put(c, out, m);
					}
				} else {
					long v = atol(c->buf);
					int m = snprintf(out, sizeof(out), "%ld %ld %s\n", v, v * 7, pad);
					put(c, out, m);
				}
				int rest = c->n - (nl + 1 - c->buf);
				memmove(c->buf, nl + 1, rest);
				c->n = rest;
			}
		}
	}
}

static int udpsock(int peer, int *port)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		die("socket");
	seti(s, SOL_SOCKET, SO_RCVBUF, 64 << 10);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(s, (void *)&a, sizeof(a)) < 0)
		die("bind");
	socklen_t len = sizeof(a);
	getsockname(s, (void *)&a, &len);
	*port = ntohs(a.sin_port);
	a.sin_port = htons(peer);
	if (connect(s, (void *)&a, sizeof(a)) < 0)
		die("connect");
	printf("port %d\nready\n", *port);
	fflush(stdout);
	return s;
}

static void udp(int peer, int readit)
{
	int port;
	// Beside the UDP socket: a TCP socket never bound, and an IPv6 one
	// bound but neither listening nor connected (both in state CLOSE).
	int fresh = socket(AF_INET, SOCK_STREAM, 0);
	int bound = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 b6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t b6len = sizeof(b6);
	if (fresh < 0 || bound < 0 || bind(bound, (void *)&b6, sizeof(b6)) < 0 || getsockname(bound, (void *)&b6, &b6len) < 0)
		die("unconnected TCP sockets");
	int boundport = ntohs(b6.sin6_port);
	int s = udpsock(peer, &port);
	for (;;) {
		if (triggered()) {
			struct sockaddr_in6 g = {0};
			socklen_t glen = sizeof(g);
			if (geti(fresh, SOL_SOCKET, SO_TYPE) != SOCK_STREAM || geti(fresh, SOL_SOCKET, SO_DOMAIN) != AF_INET)
				bad("fresh TCP socket type", fresh, geti(fresh, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
			if (getsockname(fresh, (void *)&g, &glen) < 0 || ((struct sockaddr_in *)&g)->sin_port != 0)
				bad("fresh TCP socket port", fresh, ntohs(((struct sockaddr_in *)&g)->sin_port), 0);
			glen = sizeof(g);
			if (getsockname(bound, (void *)&g, &glen) < 0 || g.sin6_family != AF_INET6 || ntohs(g.sin6_port) != boundport)
				bad("bound TCP socket port", bound, ntohs(g.sin6_port), boundport);
			if (!readit) {
				printf("OK\n");
				exit(0);
			}
			struct sockaddr_in a;
			socklen_t len = sizeof(a);
			getsockname(s, (void *)&a, &len);
			if (ntohs(a.sin_port) != port || a.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
				bad("UDP local port", s, ntohs(a.sin_port), port);
			len = sizeof(a);
			if (getpeername(s, (void *)&a, &len) < 0 || ntohs(a.sin_port) != peer)
				bad("UDP peer port", s, ntohs(a.sin_port), peer);
			if (geti(s, SOL_SOCKET, SO_RCVBUF) != 2 * (64 << 10))
				bad("UDP SO_RCVBUF", s, geti(s, SOL_SOCKET, SO_RCVBUF), 2 * (64 << 10));
			if (geti(s, SOL_SOCKET, SO_BUF_LOCK) != SOCK_RCVBUF_LOCK)
				bad("UDP SO_BUF_LOCK", s, geti(s, SOL_SOCKET, SO_BUF_LOCK), SOCK_RCVBUF_LOCK);
			if (geti(fresh, SOL_SOCKET, SO_BUF_LOCK) != 0)
				bad("fresh TCP SO_BUF_LOCK", fresh, geti(fresh, SOL_SOCKET, SO_BUF_LOCK), 0);
			printf(fails ? "FAIL\n" : "OK\n");
			exit(fails ? 1 : 0);
		}
		if (!readit) {
			usleep(1000);
			continue;
		}
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, 5) <= 0)
			continue;
		char buf[600] = "echo:";
		int n = recv(s, buf + 5, sizeof(buf) - 5, MSG_DONTWAIT);
		if (n < 0)
			continue;
		if (send(s, buf, n + 5, 0) < 0)
			printf("FAIL: send: %s\n", strerror(errno)), fails++;
	}
}

static void waittrigger(void)
{
	printf("ready\n");
	fflush(stdout);
	while (!triggered())
		usleep(1000);
	printf("OK\n");
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	trigger = argv[1];
	const char *mode = argv[2];
	// TCPSERVER_BALLAST_MB: that much resident memory, so that a dump
	// takes a while after its network lock.
	const char *ballast = getenv("TCPSERVER_BALLAST_MB");
	if (ballast) {
		size_t n = (size_t)atol(ballast) << 20;
		char *b = malloc(n);
		if (!b)
			return 2;
		memset(b, 1, n);
	}
	if (!strcmp(mode, "tcp4"))
		serve(AF_INET);
	if (!strcmp(mode, "tcp6"))
		serve(AF_INET6);
	if (!strcmp(mode, "udp") && argc > 3)
		udp(atoi(argv[3]), 1);
	if (!strcmp(mode, "udpqueued") && argc > 3)
		udp(atoi(argv[3]), 0);
	if (!strcmp(mode, "backlog")) {
		listener(AF_INET);
		waittrigger();
	}
	if (!strcmp(mode, "closewait")) {
		int l = listener(AF_INET);
		int c = accept(l, NULL, NULL);
		struct pollfd p = {.fd = c, .events = POLLRDHUP};
		poll(&p, 1, -1);
		waittrigger();
	}
	if (!strcmp(mode, "netns")) {
		int self = open("/proc/self/ns/net", O_RDONLY);
		if (self < 0 || unshare(CLONE_NEWNET) < 0)
			die("unshare");
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		if (s < 0 || setns(self, CLONE_NEWNET) < 0)
			die("setns");
		close(self);
		waittrigger();
	}
	return 2;
}
