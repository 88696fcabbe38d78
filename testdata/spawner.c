// spawner: creates and joins short-lived threads without pause, so that a
// checkpoint always meets threads being born and dying.
//
// Protocol: spawner <trigger>
// Four spawner threads each loop: create a thread that adds 1 to a shared
// counter and exits, join it, count the join. Prints "ready\n" after 1000
// joins, waits for the trigger file, runs 2000 more joins, then checks the
// counter equals the number of joins and prints "OK\n" (exit 0) or
// "FAIL ...\n" (exit 1).
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long added, joined;
static atomic_int stop;

static void *child(void *arg)
{
	(void)arg;
	atomic_fetch_add(&added, 1);
	return NULL;
}

static void *spawner(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		pthread_t t;
		if (pthread_create(&t, NULL, child, NULL) != 0)
			continue;
		pthread_join(t, NULL);
		atomic_fetch_add(&joined, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	pthread_t sp[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&sp[i], NULL, spawner, NULL);
	struct timespec ms = { 0, 1000000 };
	while (atomic_load(&joined) < 1000)
		nanosleep(&ms, NULL);
	(void)!write(1, "ready\n", 6);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	long target = atomic_load(&joined) + 2000;
	while (atomic_load(&joined) < target)
		nanosleep(&ms, NULL);
	atomic_store(&stop, 1);
	for (int i = 0; i < 4; i++)
		pthread_join(sp[i], NULL);
	char buf[96];
	if (atomic_load(&added) != atomic_load(&joined)) {
		snprintf(buf, sizeof buf, "FAIL added %ld joined %ld\n", atomic_load(&added), atomic_load(&joined));
		(void)!write(1, buf, strlen(buf));
		return 1;
	}
	(void)!write(1, "OK\n", 3);
	return 0;
}
