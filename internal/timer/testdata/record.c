// record: records the /proc/PID/timers samples of the timer parser tests.
//
// Build and run from this directory (no root needed):
//   gcc -O1 -Wall -o /tmp/record record.c && /tmp/record
// It creates, with raw timer_create calls, one timer of each notification
// kind and several clocks (one per line below, ids 0-6), deletes id 1, and
// copies /proc/self/timers to proc_timers.txt (the kernel lists the newest
// timer first). The tests hard-code the values (pid, ids, clocks): update
// them after re-recording.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int create(clockid_t clock, int notify, int signo, unsigned long value)
{
	struct sigevent sev;
	int id = -1;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = signo;
	sev.sigev_value.sival_ptr = (void *)value;
	if (notify & SIGEV_THREAD_ID)
		sev._sigev_un._tid = gettid();
	if (syscall(SYS_timer_create, clock, &sev, &id)) {
		fprintf(stderr, "timer_create clock %d notify %d: ", (int)clock, notify);
		perror("");
		exit(1);
	}
	return id;
}

int main(void)
{
	clockid_t cpu;
	char cmd[128];

	if (clock_getcpuclockid(getpid(), &cpu)) {
		perror("clock_getcpuclockid");
		return 1;
	}
	create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0x1234);
	create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGUSR1, 0);
	create(CLOCK_REALTIME, SIGEV_THREAD_ID, SIGUSR2, 0xdeadbeefcafe);
	create(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0);
	create(CLOCK_PROCESS_CPUTIME_ID, SIGEV_THREAD, SIGRTMIN + 2, 7);
	create(cpu, SIGEV_SIGNAL, SIGALRM, 0xffffffffffffffff);
	create(CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, 0, 42);
	syscall(SYS_timer_delete, 1);
	snprintf(cmd, sizeof(cmd), "cat /proc/%d/timers > proc_timers.txt", getpid());
	return system(cmd) == 0 ? 0 : 1;
}
