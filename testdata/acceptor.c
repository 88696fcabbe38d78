// acceptor: a TCP server whose accept queue is rarely empty, for the
// tests of the accept-queue drain, talking to clients outside the tree
// (the test).
//
// Protocol: acceptor TRIGGER MODE
//   slow: listens on 127.0.0.1 port 0 (backlog 64), prints "port N\n"
//     and "ready\n", then serves one connection at a time, sleeping
//     50 ms before each accept: clients that keep connecting find
//     their connections waiting in the accept queue.
//   prefork: listens the same way, then forks a child; parent and child
//     both accept on the shared listener (non-blocking, after poll)
//     and serve, each sleeping 20 ms after each connection it served.
// Serving a connection: read one request line "N\n", reply
// "N <N*7> <pid>\n", close. Once TRIGGER exists each process prints
// "served K by PID" and exits 0; the prefork parent waits for its
// child first and prints "OK\n" (exit 1 if the child failed); slow
// prints "OK\n" too.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *trigger;

static void die(const char *what)
{
	fprintf(stderr, "acceptor: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int triggered(void) { return access(trigger, F_OK) == 0; }

// serve answers the one request of connection c and closes it.
static void serve(int c)
{
	char buf[64];
	int n = 0;
	while (n < (int)sizeof(buf) - 1) {
		int r = read(c, buf + n, sizeof(buf) - 1 - n);
		if (r <= 0)
			break;
		n += r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = 0;
	long v = atol(buf);
	char out[96];
	int m = snprintf(out, sizeof(out), "%ld %ld %d\n", v, v * 7, getpid());
	if (write(c, out, m) != m)
		fprintf(stderr, "acceptor %d: write: %s\n", getpid(), strerror(errno));
	close(c);
}

// loop accepts and serves until the trigger exists, and returns how
// many connections it served.
static long loop(int l, int before, int after)
{
	long served = 0;
	while (!triggered()) {
		struct pollfd p = {.fd = l, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		if (before)
			usleep(before * 1000);
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			die("accept");
		}
		serve(c);
		served++;
		if (after)
			usleep(after * 1000);
	}
	return served;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	trigger = argv[1];
	int prefork = !strcmp(argv[2], "prefork");
	if (!prefork && strcmp(argv[2], "slow"))
		return 2;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (l < 0)
		die("socket");
	int one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (bind(l, (void *)&a, sizeof(a)) < 0 || listen(l, 64) < 0 || getsockname(l, (void *)&a, &len) < 0)
		die("bind/listen");
	printf("port %d\n", ntohs(a.sin_port));
	fflush(stdout);
	pid_t child = 0;
	if (prefork) {
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			long n = loop(l, 0, 20);
			printf("served %ld by %d\n", n, getpid());
			return 0;
		}
	}
	printf("ready\n");
	fflush(stdout);
	long n = prefork ? loop(l, 0, 20) : loop(l, 50, 0);
	printf("served %ld by %d\n", n, getpid());
	int status = 0;
	if (child > 0 && (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		printf("FAIL: child %d status %#x\n", child, status);
		return 1;
	}
	printf("OK\n");
	return 0;
}
