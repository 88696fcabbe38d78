// threads: worker threads contend on a mutex and a condition variable
// while the checkpoint happens, and check their shared state afterwards.
//
// Exercises: several threads (registers, TLS, rseq, robust lists, clear-tid
// addresses), threads blocked in futex (mutex, condvar), nanosleep, and
// poll and read on a pipe.
//
// Protocol: threads [nthreads [trigger]]   (defaults: 4, "trigger")
// Each worker repeatedly locks the mutex, bumps its own counter and the
// shared total, signals the condvar, and sleeps 1 ms; a waiter thread waits
// on the condvar. Prints "ready\n" once every worker has run, then waits
// for the trigger file; afterwards it lets the workers run 200 more rounds
// each, stops and joins them (pthread_join relies on the clear-tid
// address), checks that total == sum of the per-thread counters, that each
// thread still sees its own gettid() and TLS value, and prints "OK\n"
// (exit 0) or "FAIL ...\n" (exit 1).
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define MAXT 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long total, counts[MAXT], rounds_after[MAXT];
static volatile int after, stop;
static int bad;
static __thread long tls_id;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void *worker(void *arg)
{
	long id = (long)arg;
	pid_t tid = syscall(SYS_gettid);
	tls_id = id * 1000 + 7;
	struct timespec ts = { 0, 1000000 };
	while (!stop) {
		pthread_mutex_lock(&mu);
		counts[id]++;
		total++;
		if (after)
			rounds_after[id]++;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		if (syscall(SYS_gettid) != tid || tls_id != id * 1000 + 7)
			bad = 1;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int pfd[2];
static volatile int polled, readbyte;

// poller blocks in poll() without a timeout, then in read(), on a pipe the
// main thread writes to only after the trigger.
static void *poller(void *arg)
{
	(void)arg;
	struct pollfd p = { .fd = pfd[0], .events = POLLIN };
	while (poll(&p, 1, -1) != 1)
		;
	polled = 1;
	char c;
	if (read(pfd[0], &c, 1) == 1)
		readbyte = c;
	return NULL;
}

static void *waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!stop)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4;
	const char *trigger = argc > 2 ? argv[2] : "trigger";
	pthread_t th[MAXT + 1], pt;
	if (pipe(pfd) != 0)
		return 2;
	pthread_create(&pt, NULL, poller, NULL);
	if (n < 1 || n > MAXT)
		n = 4;
	for (long i = 0; i < n; i++)
		pthread_create(&th[i], NULL, worker, (void *)i);
	pthread_create(&th[n], NULL, waiter, NULL);
	struct timespec ms = { 0, 1000000 };
	for (;;) {
		int all = 1;
		pthread_mutex_lock(&mu);
		for (int i = 0; i < n; i++)
			if (counts[i] == 0)
				all = 0;
		pthread_mutex_unlock(&mu);
		if (all)
			break;
		nanosleep(&ms, NULL);
	}
	say("ready\n");
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	after = 1;
	(void)!write(pfd[1], "x", 1);
	for (;;) {
		int done = 1;
		pthread_mutex_lock(&mu);
		for (int i = 0; i < n; i++)
			if (rounds_after[i] < 200)
				done = 0;
		pthread_mutex_unlock(&mu);
		if (done)
			break;
		nanosleep(&ms, NULL);
	}
	stop = 1;
	pthread_mutex_lock(&mu);
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i <= n; i++)
		pthread_join(th[i], NULL);
	pthread_join(pt, NULL);
	if (!polled || readbyte != 'x')
		bad = 2;
	long sum = 0;
	for (int i = 0; i < n; i++)
		sum += counts[i];
	char buf[128];
	if (sum != total || bad) {
		snprintf(buf, sizeof buf, "FAIL total %ld sum %ld bad %d\n", total, sum, bad);
		say(buf);
		return 1;
	}
	say("OK\n");
	return 0;
}
