// echoserver: a TCP echo server for the migration tests.
//
// Protocol: echoserver ADDR PORT
//   listens on ADDR:PORT (IPv4, or IPv6 when ADDR has a ':'; SO_REUSEADDR,
//   backlog 16), prints
//   "ready\n", then serves every connection it accepts: whatever a
//   client sends comes back, byte for byte, in order. One process, one
//   thread, a poll loop; writes block until the socket takes them (the
//   tests send little). A connection closed by its client is closed;
//   the server runs until killed.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFDS 64

static int write_all(int fd, const char *p, ssize_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: echoserver ADDR PORT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	int v6 = strchr(argv[1], ':') != NULL;
	int ls = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[2]))};
	if (inet_pton(v6 ? AF_INET6 : AF_INET, argv[1], v6 ? (void *)&sa6.sin6_addr : (void *)&sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	struct sockaddr *addr = v6 ? (struct sockaddr *)&sa6 : (struct sockaddr *)&sa;
	socklen_t len = v6 ? sizeof sa6 : sizeof sa;
	if (bind(ls, addr, len) < 0 || listen(ls, 16) < 0) {
		perror("bind/listen");
		return 1;
	}
	printf("ready\n");
	struct pollfd fds[MAXFDS];
	int n = 1;
	fds[0].fd = ls;
	fds[0].events = POLLIN;
	char buf[65536];
	for (;;) {
		if (poll(fds, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		for (int i = n - 1; i >= 1; i--) {
			if (!fds[i].revents)
				continue;
			ssize_t r = read(fds[i].fd, buf, sizeof buf);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0 || write_all(fds[i].fd, buf, r) < 0) {
				close(fds[i].fd);
				fds[i] = fds[--n];
			}
		}
		if (fds[0].revents & POLLIN) {
			int c = accept(ls, NULL, NULL);
			if (c >= 0 && n < MAXFDS) {
				fds[n].fd = c;
				fds[n].events = POLLIN;
				n++;
			} else if (c >= 0) {
				close(c);
			}
		}
	}
}
