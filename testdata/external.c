// external: holds a pipe and a socket whose other ends the test holds
// (outside the dumped tree), for the external-object tests.
//
// Protocol: external TRIGGER pipe|sock
// Started with fds (given by the test):
//   5  the read end of a pipe the test writes to;
//   6  a SOCK_STREAM unix socket whose peer the test holds;
//   7  the write end of a pipe the test reads.
// It ignores SIGPIPE, sets O_NONBLOCK on 5 and 7, dups 5 to 9, forks a
// child that keeps them all, writes "ready\n" to stdout and polls every
// 1 ms until the file TRIGGER exists (the child too: it then exits 0 if
// its fds 5, 6, 7 are the same objects as its parent's, seen through
// /proc/PPID/fd, else 1).
// Before the dump the test writes "pre-pipe" into the pipe at 5 and
// "pre-sock" into the socket at 6, which it leaves unread.
// Then it checks, printing "OK\n" and exiting 0 when all hold, "FAIL:
// reason\n" and exiting 1 otherwise:
//   both: 5 and 9 are one pipe (same inode), 5 and 7 are O_NONBLOCK, 6
//     is not; a write on 7 fails with EPIPE (its reader is gone); the
//     child exits 0;
//   pipe (restored with --inherit-fd for the pipe, whose writer has sent
//     "post-pipe" and closed it): 5 reads "pre-pipepost-pipe", then end
//     of file; 6 reads "pre-sock", then end of file, and a write on it
//     fails with EPIPE;
//   sock (restored with --inherit-fd for the socket, whose new peer has
//     sent "post-sock"): 5 reads "pre-pipe", then end of file; 6 reads
//     exactly "post-sock" and then sends "reply" on it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void wait_trigger(const char *trigger)
{
	struct timespec ms = {0, 1000000};
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
}

// read_n reads up to n bytes from fd, blocking or not, stopping at end of
// file; it returns the count, -1 on error or after 10 s without data.
static ssize_t read_n(int fd, char *buf, size_t n, int *eof)
{
	size_t got = 0;
	*eof = 0;
	while (got < n) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 10000) != 1)
			return -1;
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			*eof = 1;
			break;
		}
		got += (size_t)r;
	}
	return (ssize_t)got;
}

// expect_all checks fd reads exactly want and then end of file.
static void expect_all(int fd, const char *want, const char *why)
{
	char buf[64];
	int eof;
	ssize_t n = read_n(fd, buf, sizeof buf, &eof);
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)n) != 0 || !eof) {
		if (n >= 0)
			printf("got %zd bytes \"%.*s\", eof %d\n", n, (int)n, buf, eof);
		fail(why);
	}
}

static void expect_epipe(int fd, const char *why)
{
	errno = 0;
	if (write(fd, "x", 1) != -1 || errno != EPIPE)
		fail(why);
}

static void set_nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		fail("F_SETFL");
}

static int nonblock(int fd)
{
	return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		fail("usage: external TRIGGER pipe|sock");
	const char *mode = argv[2];
	signal(SIGPIPE, SIG_IGN);
	for (int fd = 5; fd <= 7; fd++)
		if (fcntl(fd, F_GETFD) < 0)
			fail("fds 5-7 not open");
	set_nonblock(5);
	set_nonblock(7);
	if (dup2(5, 9) != 9)
		fail("dup2");
	pid_t child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		wait_trigger(argv[1]);
		for (int fd = 5; fd <= 7; fd++) {
			char path[64];
			struct stat mine, parent;
			snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)getppid(), fd);
			if (fstat(fd, &mine) < 0 || stat(path, &parent) < 0 || mine.st_ino != parent.st_ino)
				_exit(1);
		}
		_exit(0);
	}
	printf("ready\n");
	fflush(stdout);
	wait_trigger(argv[1]);

	struct stat a, b;
	if (fstat(5, &a) < 0 || fstat(9, &b) < 0 || a.st_ino != b.st_ino || !S_ISFIFO(a.st_mode))
		fail("fds 5 and 9 are not one pipe");
	if (!nonblock(5) || !nonblock(7) || nonblock(6))
		fail("status flags");
	expect_epipe(7, "write on 7 (reader gone) does not fail with EPIPE");
	if (strcmp(mode, "pipe") == 0) {
		expect_all(5, "pre-pipepost-pipe", "fd 5 does not read pre-pipepost-pipe then EOF");
		expect_all(6, "pre-sock", "fd 6 does not read pre-sock then EOF");
		expect_epipe(6, "write on 6 (peer gone) does not fail with EPIPE");
	} else if (strcmp(mode, "sock") == 0) {
		expect_all(5, "pre-pipe", "fd 5 does not read pre-pipe then EOF");
		char buf[16];
		int eof;
		if (read_n(6, buf, 9, &eof) != 9 || memcmp(buf, "post-sock", 9) != 0)
			fail("fd 6 does not read post-sock");
		if (write(6, "reply", 5) != 5)
			fail("write reply on 6");
	} else {
		fail("unknown mode");
	}
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("the child's fds 5-7 are not its parent's objects");
	printf("OK\n");
	fflush(stdout);
	return 0;
}
