// sockopts: holds TCP and UDP sockets with socket options set, for the
// socket option dump and restore tests.
//
// Protocol: sockopts TRIGGER MODE
// MODE:
//   - set: fd 3 is an unconnected TCP socket, fd 4 a UDP socket bound to
//     127.0.0.1 (any port), fd 5 an IPv6 TCP socket (when the kernel has
//     IPv6). Each gets SO_MARK, SO_BINDTODEVICE "lo", SO_NO_CHECK,
//     SO_PRIORITY 7, SO_ZEROCOPY, SO_MAX_PACING_RATE, SO_DONTROUTE and
//     SO_RCVLOWAT (the TCP ones SO_OOBINLINE too), with values that differ
//     per socket. The program reads every value back, writes "ready\n" and
//     polls every 1 ms until TRIGGER exists; then it reads them again and
//     writes "OK\n" and exits 0 if each is what it was, else "FAIL: …"
//     and exits 1.
//   - refused: fd 3 is an unconnected TCP socket with TCP_WINDOW_CLAMP
//     5000 (an option rtcr still refuses); after the trigger it writes
//     "OK\n" and exits 0 if the clamp is still 5000.
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif

static void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void seti(int fd, int level, int opt, int v, const char *name)
{
	if (setsockopt(fd, level, opt, &v, sizeof(v)) < 0)
		die(name);
}

static int geti(int fd, int level, int opt)
{
	int v = 0;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, opt, &v, &l) < 0)
		die("getsockopt");
	return v;
}

static void wait_trigger(const char *trigger)
{
	struct timespec ts = {0, 1000000L};
	while (access(trigger, F_OK) != 0)
		nanosleep(&ts, NULL);
}

#define NOPTS 8
static const struct {
	int opt;
	const char *name;
} opts[NOPTS] = {
	{SO_MARK, "SO_MARK"},         {SO_NO_CHECK, "SO_NO_CHECK"},   {SO_PRIORITY, "SO_PRIORITY"},
	{SO_ZEROCOPY, "SO_ZEROCOPY"}, {SO_DONTROUTE, "SO_DONTROUTE"}, {SO_RCVLOWAT, "SO_RCVLOWAT"},
	{SO_OOBINLINE, "SO_OOBINLINE"}, {SO_KEEPALIVE, "SO_KEEPALIVE"},
};

struct saved {
	int fd, tcp;
	int val[NOPTS];
	char dev[16];
	socklen_t devlen;
	uint64_t pacing;
};

static void setall(struct saved *s, int n)
{
	int want[NOPTS] = {7 + n, 1, 7, 1, 1, 5 + n, 1, 1};
	for (int i = 0; i < NOPTS; i++) {
		if (!s->tcp && (opts[i].opt == SO_OOBINLINE || opts[i].opt == SO_KEEPALIVE))
			continue;
		seti(s->fd, SOL_SOCKET, opts[i].opt, want[i], opts[i].name);
	}
	if (setsockopt(s->fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) < 0)
		die("SO_BINDTODEVICE");
	uint64_t rate = 123456 + n;
	if (setsockopt(s->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate)) < 0)
		die("SO_MAX_PACING_RATE");
}

static void readall(struct saved *s)
{
	for (int i = 0; i < NOPTS; i++)
		s->val[i] = geti(s->fd, SOL_SOCKET, opts[i].opt);
	s->devlen = sizeof(s->dev);
	memset(s->dev, 0, sizeof(s->dev));
	if (getsockopt(s->fd, SOL_SOCKET, SO_BINDTODEVICE, s->dev, &s->devlen) < 0)
		die("get SO_BINDTODEVICE");
	socklen_t l = sizeof(s->pacing);
	if (getsockopt(s->fd, SOL_SOCKET, SO_MAX_PACING_RATE, &s->pacing, &l) < 0)
		die("get SO_MAX_PACING_RATE");
}

static int compare(const struct saved *a, const struct saved *b)
{
	int ok = 1;
	for (int i = 0; i < NOPTS; i++)
		if (a->val[i] != b->val[i]) {
			printf("FAIL: fd %d: %s %d, was %d\n", a->fd, opts[i].name, b->val[i], a->val[i]);
			ok = 0;
		}
	if (a->devlen != b->devlen || memcmp(a->dev, b->dev, sizeof(a->dev)) != 0) {
		printf("FAIL: fd %d: SO_BINDTODEVICE %.16s (%u bytes), was %.16s (%u)\n", a->fd, b->dev, b->devlen, a->dev, a->devlen);
		ok = 0;
	}
	if (a->pacing != b->pacing) {
		printf("FAIL: fd %d: SO_MAX_PACING_RATE %llu, was %llu\n", a->fd, (unsigned long long)b->pacing,
		       (unsigned long long)a->pacing);
		ok = 0;
	}
	return ok;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: sockopts TRIGGER set|refused\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	if (strcmp(argv[2], "refused") == 0) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd != 3)
			die("socket as fd 3");
		seti(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, 5000, "TCP_WINDOW_CLAMP");
		printf("ready\n");
		wait_trigger(argv[1]);
		if (geti(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP) != 5000) {
			printf("FAIL: TCP_WINDOW_CLAMP %d\n", geti(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP));
			return 1;
		}
		printf("OK\n");
		return 0;
	}
	struct saved before[3], after[3];
	int n = 0;
	before[n].fd = socket(AF_INET, SOCK_STREAM, 0);
	before[n++].tcp = 1;
	before[n].fd = socket(AF_INET, SOCK_DGRAM, 0);
	before[n++].tcp = 0;
	int fd6 = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd6 >= 0) {
		before[n].fd = fd6;
		before[n++].tcp = 1;
	}
	if (before[0].fd != 3 || before[1].fd != 4)
		die("sockets as fds 3 and 4");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	for (int i = 0; i < n; i++)
		setall(&before[i], i);
	if (bind(4, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	for (int i = 0; i < n; i++)
		readall(&before[i]);
	printf("ready\n");
	wait_trigger(argv[1]);
	int ok = 1;
	for (int i = 0; i < n; i++) {
		after[i] = before[i];
		readall(&after[i]);
		ok &= compare(&before[i], &after[i]);
	}
	if (!ok)
		return 1;
	printf("OK\n");
	return 0;
}
