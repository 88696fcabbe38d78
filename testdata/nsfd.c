// nsfd: holds fds on namespace files, for the namespace fd tests.
//
// Protocol: nsfd TRIGGER own|other
// own: opens /proc/self/ns/net as fd 3 (O_RDONLY), /proc/self/ns/uts as
// fd 4 (O_RDONLY|O_CLOEXEC) and /proc/self/ns/pid as fd 5, writes
// "ready\n", polls every 1 ms until the file TRIGGER exists, then checks
// that each fd is on the namespace the process is in (same inode as
// /proc/self/ns/TYPE), that fd 4 alone is close-on-exec and that
// setns(3, CLONE_NEWNET) takes it; writes "OK\n" and exits 0, or
// "FAIL: …" and exits 1.
// other: a child unshares its UTS namespace; the program opens
// /proc/CHILD/ns/uts as fd 5 (after a pipe), lets the child exit and reaps it (the fd
// alone keeps that namespace), writes "ready\n", waits for the trigger,
// writes "OK\n" and exits 0.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void check(int fd, const char *type, int cloexec)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", type);
	if (fstat(fd, &a) != 0 || stat(path, &b) != 0)
		die(path);
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		printf("FAIL: fd %d is on namespace %lu, %s is %lu\n", fd, (unsigned long)a.st_ino, path,
		       (unsigned long)b.st_ino);
		exit(1);
	}
	if (!!(fcntl(fd, F_GETFD) & FD_CLOEXEC) != cloexec) {
		printf("FAIL: fd %d close-on-exec %d, want %d\n", fd, !cloexec, cloexec);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 1000000};
	int own;

	if (argc != 3) {
		fprintf(stderr, "usage: nsfd TRIGGER own|other\n");
		return 2;
	}
	own = strcmp(argv[2], "own") == 0;
	if (own) {
		if (open("/proc/self/ns/net", O_RDONLY) != 3 || open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC) != 4 ||
		    open("/proc/self/ns/pid", O_RDONLY) != 5)
			die("open namespaces as fds 3-5");
	} else {
		int p[2], st;
		char c, path[64];
		pid_t child;

		if (pipe(p) != 0)
			die("pipe");
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			if (unshare(CLONE_NEWUTS) != 0 || write(p[1], "x", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		if (read(p[0], &c, 1) != 1)
			die("read");
		snprintf(path, sizeof(path), "/proc/%d/ns/uts", child);
		if (open(path, O_RDONLY) < 0)
			die(path);
		kill(child, SIGKILL);
		if (waitpid(child, &st, 0) != child)
			die("waitpid");
	}
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ts, NULL);
	if (own) {
		check(3, "net", 0);
		check(4, "uts", 1);
		check(5, "pid", 0);
		if (setns(3, CLONE_NEWNET) != 0)
			die("setns of fd 3");
	}
	printf("OK\n");
	fflush(stdout);
	return 0;
}
