// unixpair: holds AF_UNIX socket pairs for the checkpoint/restore tests
// of internal/files, waits for a trigger and then checks them.
//
// Protocol: unixpair TRIGGER pairs|rights|outside
// It sets up, for "pairs":
//   3, 4  a SOCK_STREAM pair: "to4" written on 3 and "to3xx" on 4, unread;
//   5, 6  a SOCK_SEQPACKET pair: messages "one" and "two2" sent on 5,
//         unread; SO_PASSCRED then set on 5;
//   7, 8  a SOCK_DGRAM pair; a child is forked that keeps 8 (the parent
//         closes it, the child closes 3-7) and sends "hi" on it, which
//         the parent reads before it says ready;
// for "rights": 3, 4 a SOCK_STREAM pair with fd 0 sent on 3 (SCM_RIGHTS),
// unread;
// for "outside": 3 a SOCK_STREAM socket whose peer is held by a grandchild
// that its child left behind (outside the tree), until it reads a byte.
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists (the child too). Then it checks, printing "OK\n" and
// exiting 0 when all hold, "FAIL: reason\n" and exiting 1 otherwise:
//   pairs: fd 3 reads exactly "to3xx" and fd 4 "to4", then both would
//     block; "x" written on 3 reads back on 4; fd 6 receives "one" then
//     "two2" (two messages), then would block; 5 has SO_PASSCRED, 6 not;
//     the socket types are the ones made; the parent sends "after" on 7,
//     the child receives it and answers "reply", which the parent
//     receives; the child exits 0.
//   outside: "x" can be written on 3.
//   rights: fd 4 receives the byte with one fd attached.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "unixpair: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void pair(int type, int a, int b)
{
	int sv[2];
	if (socketpair(AF_UNIX, type, 0, sv) < 0)
		die("socketpair");
	// Out of the way first: socketpair may have returned a or b.
	int ha = fcntl(sv[0], F_DUPFD, 100), hb = fcntl(sv[1], F_DUPFD, 100);
	if (ha < 0 || hb < 0)
		die("F_DUPFD");
	close(sv[0]);
	close(sv[1]);
	if (dup2(ha, a) < 0 || dup2(hb, b) < 0)
		die("dup2");
	close(ha);
	close(hb);
}

static void wait_trigger(const char *trigger)
{
	struct timespec ms = {0, 1000000};
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
}

// expect receives one message on fd without waiting and checks it is want.
static void expect(int fd, const char *want, const char *why)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n) != 0)
		fail(why);
}

static void expect_empty(int fd, const char *why)
{
	char c;
	if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail(why);
}

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) < 0)
		return -1;
	return v;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: unixpair TRIGGER pairs|rights|outside");
	const char *mode = argv[2];
	pid_t child = -1;
	if (strcmp(mode, "pairs") == 0) {
		pair(SOCK_STREAM, 3, 4);
		if (write(3, "to4", 3) != 3 || write(4, "to3xx", 5) != 5)
			die("write stream");
		pair(SOCK_SEQPACKET, 5, 6);
		if (send(5, "one", 3, 0) != 3 || send(5, "two2", 4, 0) != 4)
			die("send seqpacket");
		// After the sends: sending with SO_PASSCRED autobinds a name.
		int one = 1;
		if (setsockopt(5, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0)
			die("SO_PASSCRED");
		pair(SOCK_DGRAM, 7, 8);
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			for (int fd = 3; fd <= 7; fd++)
				close(fd);
			if (send(8, "hi", 2, 0) != 2)
				die("child send");
			wait_trigger(argv[1]);
			char buf[16];
			ssize_t n = recv(8, buf, sizeof buf, 0);
			if (n != 5 || memcmp(buf, "after", 5) != 0)
				_exit(3);
			if (send(8, "reply", 5, 0) != 5)
				_exit(4);
			_exit(0);
		}
		close(8);
		char buf[16];
		if (recv(7, buf, sizeof buf, 0) != 2)
			die("recv hi");
	} else if (strcmp(mode, "rights") == 0) {
		pair(SOCK_STREAM, 3, 4);
		char cbuf[CMSG_SPACE(sizeof(int))] = {0};
		struct iovec iov = {"r", 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		int zero = 0;
		memcpy(CMSG_DATA(c), &zero, sizeof zero);
		if (sendmsg(3, &m, 0) != 1)
			die("sendmsg SCM_RIGHTS");
	} else if (strcmp(mode, "outside") == 0) {
		pair(SOCK_STREAM, 3, 4);
		pid_t c = fork();
		if (c < 0)
			die("fork");
		if (c == 0) {
			if (fork() == 0) {
				close(3);
				char x;
				_exit(read(4, &x, 1) == 1 ? 0 : 1);
			}
			_exit(0);
		}
		if (waitpid(c, NULL, 0) != c)
			die("waitpid");
		close(4);
	} else {
		die("unknown mode");
	}
	printf("ready\n");
	fflush(stdout);
	wait_trigger(argv[1]);
	if (strcmp(mode, "pairs") == 0) {
		expect(3, "to3xx", "fd 3 does not read to3xx");
		expect(4, "to4", "fd 4 does not read to4");
		expect_empty(3, "fd 3 has more");
		expect_empty(4, "fd 4 has more");
		if (write(3, "x", 1) != 1)
			fail("write on 3");
		expect(4, "x", "x written on 3 not read on 4");
		expect(6, "one", "fd 6 first message is not one");
		expect(6, "two2", "fd 6 second message is not two2");
		expect_empty(6, "fd 6 has more");
		if (sockopt(5, SO_PASSCRED) != 1 || sockopt(6, SO_PASSCRED) != 0)
			fail("SO_PASSCRED");
		if (sockopt(3, SO_TYPE) != SOCK_STREAM || sockopt(6, SO_TYPE) != SOCK_SEQPACKET || sockopt(7, SO_TYPE) != SOCK_DGRAM)
			fail("socket types");
		if (send(7, "after", 5, 0) != 5)
			fail("send after");
		char buf[16];
		if (recv(7, buf, sizeof buf, 0) != 5 || memcmp(buf, "reply", 5) != 0)
			fail("no reply from the child");
		int st;
		if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail("child");
	} else if (strcmp(mode, "outside") == 0) {
		if (write(3, "x", 1) != 1)
			fail("write on 3");
	} else if (strcmp(mode, "rights") == 0) {
		char cbuf[CMSG_SPACE(sizeof(int))], b;
		struct iovec iov = {&b, 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		if (recvmsg(4, &m, MSG_DONTWAIT) != 1 || CMSG_FIRSTHDR(&m) == NULL || CMSG_FIRSTHDR(&m)->cmsg_type != SCM_RIGHTS)
			fail("fd 4 lost the fd in flight");
	}
	printf("OK\n");
	fflush(stdout);
	return 0;
}
