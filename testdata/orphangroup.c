// orphangroup: a child left in a process group whose leader has exited,
// for the refused dump test (the layout zdtm's zombie01 makes).
//
// Protocol: orphangroup TRIGGER
// The program forks C; C makes its own process group, clones G with
// CLONE_PARENT (G is the program's child, in C's group) and exits. Once C
// is reaped the program writes "ready\n"; G polls every 1 ms until TRIGGER
// exists and exits 0; the program reaps it, writes "OK\n" and exits 0.
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec ts = {0, 1000000};
	int status;

	if (argc != 2) {
		fprintf(stderr, "usage: orphangroup TRIGGER\n");
		return 2;
	}
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		if (setpgid(0, 0) < 0)
			_exit(3);
		long g = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (g < 0)
			_exit(3);
		if (g == 0) {
			while (access(argv[1], F_OK) != 0)
				nanosleep(&ts, NULL);
			_exit(0);
		}
		_exit(0);
	}
	if (waitpid(c, &status, 0) != c || status != 0) {
		printf("FAIL: C status %d\n", status);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	pid_t g = wait(&status);
	if (g < 0 || status != 0) {
		printf("FAIL: G status %d\n", status);
		return 1;
	}
	printf("OK\n");
	return 0;
}
