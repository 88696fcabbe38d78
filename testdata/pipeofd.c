// pipeofd: one pipe held through three open file descriptions per end, for
// the fd round trip of pipes.
//
// fds 3 and 4 are the pipe's read and write ends (pipe2), fd 5 a dup of
// fd 4, fd 6 a second open file description of the read end and fd 7 of
// the write end (opened through /proc/self/fd). O_NONBLOCK is set on fd 6
// and fd 4 (so on fd 5), not on fds 3 and 7. It writes "ready\n" and
// sleeps until killed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "pipeofd: %s: %s\n", what, strerror(errno));
	_exit(2);
}

static void nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		die("F_SETFL");
}

int main(void)
{
	int p[2];
	char path[64];

	if (pipe(p) < 0 || p[0] != 3 || p[1] != 4)
		die("pipe at fds 3 and 4");
	if (dup(4) != 5)
		die("dup to fd 5");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 3);
	if (open(path, O_RDONLY) != 6)
		die("reopen read end as fd 6");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 4);
	if (open(path, O_WRONLY) != 7)
		die("reopen write end as fd 7");
	nonblock(6);
	nonblock(4);
	if (write(7, "xy", 2) != 2)
		die("write");
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
