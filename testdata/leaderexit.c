// leaderexit: a process whose leader thread exited with pthread_exit
// while another thread runs on, for the refusal of such a process.
//
// Protocol: leaderexit TRIGGER root|child
// With "root" the program itself, with "child" a child it forks, starts
// a thread and ends its main thread with pthread_exit; the thread writes
// "ready\n" (once the main thread is gone: /proc/self/stat shows the
// process as a zombie), polls every 1 ms until TRIGGER exists, prints
// "OK\n" and exits 0. With "child" the parent waits for the child after
// TRIGGER exists and prints "OK\n" (exit 0) when it exited 0, else "FAIL:
// reason\n" (exit 1).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *trigger;

// leader_gone reports whether the leader thread has exited.
static int leader_gone(void)
{
	char buf[512], *p;
	FILE *f = fopen("/proc/self/stat", "r");

	if (f == NULL)
		return 0;
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	if (p == NULL || (p = strrchr(buf, ')')) == NULL)
		return 0;
	return p[2] == 'Z';
}

static void *worker(void *arg)
{
	struct timespec ms = {0, 1000000};

	(void)arg;
	while (!leader_gone())
		nanosleep(&ms, NULL);
	printf("ready\n");
	fflush(stdout);
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	printf("OK\n");
	fflush(stdout);
	exit(0);
}

static void run(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, worker, NULL) != 0) {
		printf("FAIL: pthread_create\n");
		exit(1);
	}
	pthread_exit(NULL);
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	int status;
	pid_t child;

	if (argc != 3) {
		fprintf(stderr, "usage: leaderexit TRIGGER root|child\n");
		return 2;
	}
	trigger = argv[1];
	if (strcmp(argv[2], "root") == 0)
		run();
	child = fork();
	if (child == 0)
		run();
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL: child did not exit 0\n");
		return 1;
	}
	printf("OK\n");
	return 0;
}
