// seccomp: a process whose main thread runs under seccomp, for the refused
// dump test.
//
// Protocol: seccomp TRIGGER strict|filter
// A helper thread is started; then the main thread enters seccomp strict
// mode (only read, write, exit, sigreturn allowed) or installs a filter
// that allows every call, writes "ready\n" and blocks reading a pipe. The
// helper polls every 1 ms until the file TRIGGER exists, then writes a byte
// to that pipe; the main thread writes "OK\n" and ends with exit(2) (the
// thread only: exit_group is not allowed in strict mode), after which the
// helper exits the process with status 0.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *trigger;
static int go[2], done[2];

static void die(const char *what)
{
	fprintf(stderr, "seccomp: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void *helper(void *arg)
{
	struct timespec ts = {0, 1000000};
	char c = 'x';

	(void)arg;
	while (access(trigger, F_OK) != 0)
		nanosleep(&ts, NULL);
	if (write(go[1], &c, 1) != 1)
		die("write go");
	if (read(done[0], &c, 1) != 1)
		die("read done");
	exit(0);
}

int main(int argc, char **argv)
{
	pthread_t th;
	char c;

	if (argc != 3) {
		fprintf(stderr, "usage: seccomp TRIGGER strict|filter\n");
		return 2;
	}
	trigger = argv[1];
	if (pipe(go) < 0 || pipe(done) < 0)
		die("pipe");
	if (pthread_create(&th, NULL, helper, NULL))
		die("pthread_create");
	if (strcmp(argv[2], "strict") == 0) {
		printf("ready\n");
		fflush(stdout);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) < 0)
			die("strict mode");
	} else {
		struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
		struct sock_fprog prog = {1, allow};

		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
			die("filter");
		printf("ready\n");
		fflush(stdout);
	}
	if (read(go[0], &c, 1) != 1)
		syscall(SYS_exit, 3);
	if (write(1, "OK\n", 3) != 3 || write(done[1], &c, 1) != 1)
		syscall(SYS_exit, 3);
	syscall(SYS_exit, 0);
	return 0;
}
