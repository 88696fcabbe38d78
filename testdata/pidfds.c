// pidfds: pidfds on processes of the tree, for the restore of pidfds.
//
// Protocol: pidfds TRIGGER
// It forks a child, opens a pidfd on itself with PIDFD_NONBLOCK (fd 3)
// and one on the child (fd 4), writes "ready\n" and polls every 1 ms until
// TRIGGER exists (the child too: it then exits 7). Then it checks, printing
// "OK\n" and exiting 0, or "FAIL: reason\n" and exiting 1: fd 3 is
// O_NONBLOCK, its fdinfo (NSpid) names this process, pidfd_send_signal works on it;
// fd 4's fdinfo names the child, and waitid(P_PIDFD) on fd 4 gets the
// child's exit status 7.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

// fdinfo_pid returns the pid the pidfd fd names in this process's pid
// namespace (the last "NSpid:" entry of its fdinfo: /proc may be of an
// outer namespace), -2 if none.
static int fdinfo_pid(int fd)
{
	char path[64], line[256], *p;
	int pid = -2;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (f == NULL)
		return -2;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		p = strrchr(line, '\t');
		if (p == NULL)
			p = line + 6;
		pid = atoi(p);
		break;
	}
	fclose(f);
	return pid;
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	siginfo_t si;
	pid_t child;

	if (argc != 2) {
		fprintf(stderr, "usage: pidfds TRIGGER\n");
		return 2;
	}
	child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0) {
		while (access(argv[1], F_OK) != 0)
			nanosleep(&ms, NULL);
		_exit(7);
	}
	if (syscall(SYS_pidfd_open, getpid(), PIDFD_NONBLOCK) != 3)
		fail("pidfd on itself at fd 3");
	if (syscall(SYS_pidfd_open, child, 0) != 4)
		fail("pidfd on the child at fd 4");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
		fail("fd 3 is not O_NONBLOCK");
	if (fdinfo_pid(3) != getpid())
		fail("fd 3 does not name this process");
	if (syscall(SYS_pidfd_send_signal, 3, 0, NULL, 0) != 0)
		fail("pidfd_send_signal on fd 3");
	if (fdinfo_pid(4) != child)
		fail("fd 4 does not name the child");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 4, &si, WEXITED) != 0)
		fail("waitid on fd 4");
	if (si.si_pid != child || si.si_code != CLD_EXITED || si.si_status != 7)
		fail("the child did not exit 7");
	printf("OK\n");
	return 0;
}
