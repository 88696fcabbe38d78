// closedpipe: pipes whose other end no process holds, for the dump of a
// pipe end alone.
//
// Protocol: closedpipe TRIGGER
// It makes a pipe, writes "buffered" into it and closes its write end
// (the read end stays at fd 3), and a second pipe whose read end it
// closes (the write end stays at fd 4), ignores SIGPIPE, forks a child
// that keeps both (so the tree holds each end twice, and none of the
// other), writes "ready\n" (the parent) and polls every 1 ms until the file TRIGGER
// exists. Then each process checks, printing "OK\n" (the parent, after
// the child exited 0) or "FAIL: reason\n":
//   fd 3 is a pipe that reads "buffered", then end of file (no writer);
//   fd 4 is a pipe whose writes fail with EPIPE (no reader).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *who, const char *why)
{
	printf("FAIL: %s: %s (errno %s)\n", who, why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void check(const char *who)
{
	struct stat st;
	char buf[64];
	ssize_t n;

	if (fstat(3, &st) < 0 || !S_ISFIFO(st.st_mode))
		fail(who, "fd 3 is not a pipe");
	if (fstat(4, &st) < 0 || !S_ISFIFO(st.st_mode))
		fail(who, "fd 4 is not a pipe");
	n = read(3, buf, sizeof(buf));
	if (n != 8 || memcmp(buf, "buffered", 8) != 0)
		fail(who, "fd 3 does not read \"buffered\"");
	if (read(3, buf, sizeof(buf)) != 0)
		fail(who, "fd 3 does not read end of file after the bytes");
	errno = 0;
	if (write(4, "x", 1) != -1 || errno != EPIPE)
		fail(who, "a write on fd 4 does not fail with EPIPE");
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	int p[2], q[2], status;
	pid_t child;

	if (argc != 2) {
		fprintf(stderr, "usage: closedpipe TRIGGER\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (pipe(p) < 0 || p[0] != 3 || p[1] != 4)
		fail("parent", "pipe at fds 3 and 4");
	if (write(4, "buffered", 8) != 8)
		fail("parent", "write");
	if (pipe(q) < 0 || q[0] != 5 || q[1] != 6)
		fail("parent", "pipe at fds 5 and 6");
	// fd 4 becomes the second pipe's write end; both other ends close.
	if (dup2(6, 4) != 4 || close(6) < 0 || close(5) < 0)
		fail("parent", "dup2");
	child = fork();
	if (child < 0)
		fail("parent", "fork");
	if (child > 0) {
		printf("ready\n");
		fflush(stdout);
	}
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (child == 0) {
		// The child checks first: both share the pipes' bytes.
		check("child");
		return 0;
	}
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("parent", "child failed");
	// The child read the bytes: only end of file is left for the parent.
	if (read(3, (char[1]){0}, 1) != 0)
		fail("parent", "fd 3 does not read end of file");
	errno = 0;
	if (write(4, "x", 1) != -1 || errno != EPIPE)
		fail("parent", "a write on fd 4 does not fail with EPIPE");
	printf("OK\n");
	return 0;
}
