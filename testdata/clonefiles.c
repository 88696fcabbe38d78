// clonefiles: a parent and a child sharing one fd table (clone with
// CLONE_FILES), for the refused dump test.
//
// Protocol: clonefiles TRIGGER
// The child is cloned with CLONE_FILES (and otherwise as fork); both poll
// every 1 ms until the file TRIGGER exists, the child exits 0 and the
// parent, once it reaped it with status 0, writes "OK\n" and exits 0. The
// parent writes "ready\n" after the clone.
#define _GNU_SOURCE
#include <errno.h>
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

int main(int argc, char **argv)
{
	int status;

	if (argc != 2) {
		fprintf(stderr, "usage: clonefiles TRIGGER\n");
		return 2;
	}
	long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0) {
		fprintf(stderr, "clonefiles: clone: %s\n", strerror(errno));
		return 2;
	}
	if (pid == 0) {
		wait_for(argv[1]);
		_exit(0);
	}
	printf("ready\n");
	fflush(stdout);
	wait_for(argv[1]);
	if (waitpid(pid, &status, 0) != pid || status != 0) {
		printf("FAIL: child status %d\n", status);
		return 1;
	}
	printf("OK\n");
	return 0;
}
