// clonefiles: processes sharing one fd table (clone with CLONE_FILES),
// for the shared fd table tests.
//
// Protocol: clonefiles TRIGGER MODE
// MODE:
//   - shared: the program P opens /dev/null as fd 3 and clones A with
//     CLONE_FILES; A clones B with CLONE_FILES and forks C (a table of its
//     own, a copy). P writes "ready\n" once all exist. After TRIGGER
//     exists: B makes fd 60 a copy of fd 3 and exits 0; C makes fd 61 one
//     and exits 0; A reaps both, requires fd 60 open (B's table is its own)
//     and exits 0. P reaps A and requires fd 60 open and fd 61 not (C's
//     table was a copy), then writes "OK\n" and exits 0; else "FAIL: …"
//     and exits 1.
//   - unshared: P clones A and B with CLONE_FILES and then unshares its fd
//     table: A and B share one that their parent does not. After TRIGGER
//     A and B exit 0; P reaps them, writes "OK\n" and exits 0.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void wait_for(const char *path)
{
	struct timespec ts = {0, 1000000};
	while (access(path, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static long clone_files(void)
{
	long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		fprintf(stderr, "clonefiles: clone: %s\n", strerror(errno));
		exit(2);
	}
	return pid;
}

static int reap(long pid)
{
	int status;
	return waitpid(pid, &status, 0) == pid && status == 0;
}

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: clonefiles TRIGGER shared|unshared\n");
		return 2;
	}
	const char *trigger = argv[1];
	if (open("/dev/null", O_RDWR) != 3)
		return 2;
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) < 0)
		return 2;
	if (strcmp(argv[2], "unshared") == 0) {
		long a = clone_files();
		if (a == 0) {
			wait_for(trigger);
			_exit(0);
		}
		long b = clone_files();
		if (b == 0) {
			wait_for(trigger);
			_exit(0);
		}
		if (unshare(CLONE_FILES) < 0)
			return 2;
		printf("ready\n");
		fflush(stdout);
		wait_for(trigger);
		if (!reap(a) || !reap(b)) {
			printf("FAIL: a child failed\n");
			return 1;
		}
		printf("OK\n");
		return 0;
	}
	long a = clone_files();
	if (a == 0) {
		long b = clone_files();
		if (b == 0) {
			wait_for(trigger);
			_exit(dup2(3, 60) == 60 ? 0 : 1);
		}
		long c = fork();
		if (c == 0) {
			wait_for(trigger);
			_exit(dup2(3, 61) == 61 ? 0 : 1);
		}
		if (c < 0)
			_exit(2);
		char x = 'x';
		if (write(ready[1], &x, 1) != 1)
			_exit(2);
		wait_for(trigger);
		if (!reap(b) || !reap(c))
			_exit(3);
		_exit(fd_open(60) ? 0 : 4);
	}
	char x;
	if (read(ready[0], &x, 1) != 1)
		return 2;
	printf("ready\n");
	fflush(stdout);
	wait_for(trigger);
	int status;
	if (waitpid(a, &status, 0) != a || status != 0) {
		printf("FAIL: A status %#x\n", status);
		return 1;
	}
	if (!fd_open(60)) {
		printf("FAIL: fd 60 that B made is not open in P\n");
		return 1;
	}
	if (fd_open(61)) {
		printf("FAIL: fd 61 that C made in its own table is open in P\n");
		return 1;
	}
	printf("OK\n");
	return 0;
}
