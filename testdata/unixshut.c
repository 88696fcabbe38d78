// unixshut: holds AF_UNIX sockets that were shut down, or whose peer was
// closed, for the shutdown round-trip test (zdtm sockets01, sockets02).
//
// Protocol: unixshut TRIGGER
// It sets up (SIGPIPE ignored):
//   3,4   a stream pair, 3 shut down for reading (4 can no longer send);
//   5,6   a stream pair, 5 shut down both ways;
//   7,8   a datagram pair, 7 shut down for reading;
//   9,10  a datagram pair, "d" sent on 9, then 9 shut down for writing;
//   11    a seqpacket socket whose peer sent "m1" and "mm2", then closed;
//   12    a stream socket whose peer wrote "abc", then closed;
//   13,14 a stream pair, "q" written on 14, then 14 shut down for writing.
// It writes "ready\n" and polls every 1 ms until the file TRIGGER exists,
// then checks each from inside (every call non-blocking): 3 sends, 4
// reads it, 4 cannot send (EPIPE); neither 5 nor 6 can send; 7 sends, 8
// receives it, 8 cannot send to 7; 10 receives "d", 9 cannot send; 11
// receives "m1", "mm2", then end of file, and cannot send; 12 reads "abc",
// then end of file, and cannot send; 13 reads "q", then end of file, and
// still sends to 14. It writes "OK\n" and exits 0, or "FAIL: …" and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what)
{
	printf("FAIL: %s (errno %s)\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void pair(int type, int a, int b)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv) < 0)
		fail("socketpair");
	if (sv[1] == a)
		fail("socketpair returned fd a as its second end");
	if (dup2(sv[0], a) != a || dup2(sv[1], b) != b)
		fail("dup2");
	for (int i = 0; i < 2; i++)
		if (sv[i] != a && sv[i] != b)
			close(sv[i]);
}

static void sends(int fd, const char *why)
{
	if (send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
		fail(why);
}

static void cannot_send(int fd, const char *why)
{
	if (send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != -1 || errno != EPIPE)
		fail(why);
}

static void receives(int fd, const char *want, const char *why)
{
	char buf[16];
	ssize_t n = recv(fd, buf, strlen(want), MSG_DONTWAIT);

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n) != 0)
		fail(why);
}

static void at_eof(int fd, const char *why)
{
	char c;

	if (recv(fd, &c, 1, MSG_DONTWAIT) != 0)
		fail(why);
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	if (argc != 2) {
		fprintf(stderr, "usage: unixshut TRIGGER\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	pair(SOCK_STREAM, 3, 4);
	if (shutdown(3, SHUT_RD) < 0)
		fail("shutdown 3");
	pair(SOCK_STREAM, 5, 6);
	if (shutdown(5, SHUT_RDWR) < 0)
		fail("shutdown 5");
	pair(SOCK_DGRAM, 7, 8);
	if (shutdown(7, SHUT_RD) < 0)
		fail("shutdown 7");
	pair(SOCK_DGRAM, 9, 10);
	if (send(9, "d", 1, 0) != 1 || shutdown(9, SHUT_WR) < 0)
		fail("send d and shutdown 9");
	pair(SOCK_SEQPACKET, 11, 20);
	if (send(20, "m1", 2, 0) != 2 || send(20, "mm2", 3, 0) != 3)
		fail("send m1, mm2");
	close(20);
	pair(SOCK_STREAM, 12, 20);
	if (write(20, "abc", 3) != 3)
		fail("write abc");
	close(20);
	pair(SOCK_STREAM, 13, 14);
	if (write(14, "q", 1) != 1 || shutdown(14, SHUT_WR) < 0)
		fail("write q and shutdown 14");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);

	sends(3, "3 cannot send");
	receives(4, "x", "4 does not read x");
	cannot_send(4, "4 sends");
	cannot_send(5, "5 sends");
	cannot_send(6, "6 sends");
	sends(7, "7 cannot send");
	receives(8, "x", "8 does not receive x");
	cannot_send(8, "8 sends to 7");
	receives(10, "d", "10 does not receive d");
	cannot_send(9, "9 sends");
	receives(11, "m1", "11 does not receive m1");
	receives(11, "mm2", "11 does not receive mm2");
	at_eof(11, "11 not at end of file");
	cannot_send(11, "11 sends");
	receives(12, "abc", "12 does not read abc");
	at_eof(12, "12 not at end of file");
	cannot_send(12, "12 sends");
	receives(13, "q", "13 does not read q");
	at_eof(13, "13 not at end of file");
	sends(13, "13 cannot send");
	receives(14, "x", "14 does not read x");
	printf("OK\n");
	fflush(stdout);
	return 0;
}
