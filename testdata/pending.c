// pending: a process with signals pending, blocked, in both the process
// queue and one thread's own queue.
//
// Exercises: pending signals (PTRACE_PEEKSIGINFO dump, re-queue on
// restore): a standard signal from kill(), two queued real-time signals
// with values, in order, and a standard signal sent to one thread with
// tgkill().
//
// Protocol: pending
// Blocks SIGUSR1, SIGUSR2 and SIGRTMIN+1 in every thread, starts one extra
// thread, then sends: kill(getpid(), SIGUSR1) (process queue),
// sigqueue(getpid(), SIGRTMIN+1, 42) and sigqueue(getpid(), SIGRTMIN+1, 43)
// (process queue, in that order), tgkill(getpid(), tid, SIGUSR2) where tid
// is the extra thread (its own queue). Then prints "ready <tid>\n" and
// sleeps forever (both threads in pause()).
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static sem_t started;
static volatile pid_t extra_tid;

static void *extra(void *arg)
{
	(void)arg;
	extra_tid = (pid_t)syscall(SYS_gettid);
	sem_post(&started);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN + 1);
	// Blocked before the thread starts: it inherits the mask.
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
		perror("sigprocmask");
		return 1;
	}
	sem_init(&started, 0, 0);
	pthread_t th;
	if (pthread_create(&th, NULL, extra, NULL) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		return 1;
	}
	while (sem_wait(&started) != 0)
		;

	pid_t pid = getpid();
	if (kill(pid, SIGUSR1) != 0) {
		perror("kill");
		return 1;
	}
	for (int v = 42; v <= 43; v++) {
		union sigval val = { .sival_int = v };
		if (sigqueue(pid, SIGRTMIN + 1, val) != 0) {
			perror("sigqueue");
			return 1;
		}
	}
	if (syscall(SYS_tgkill, pid, extra_tid, SIGUSR2) != 0) {
		perror("tgkill");
		return 1;
	}

	char buf[64];
	int len = snprintf(buf, sizeof(buf), "ready %d\n", (int)extra_tid);
	(void)!write(1, buf, (size_t)len);
	for (;;)
		pause();
}
