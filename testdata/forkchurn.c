// forkchurn: a parent that never stops forking, so that a freeze meets
// children being born and dying: each child forks a grandchild that exits
// at once, and exits itself (every other one after 10 ms); the parent
// reaps what it can and keeps up to 8 children alive.
//
// Exercises: freezing a tree that forks while it is being frozen (a child
// born while its parent was being seized is attached by the kernel to the
// tracer of its parent), zombies, children reparented away.
//
// Protocol: forkchurn. Prints the number of children forked so far, one
// line every 16 forks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms)
{
	struct timespec ts = { 0, ms * 1000000 };
	nanosleep(&ts, NULL);
}

int main(void)
{
	long forked = 0;
	int alive = 0;
	char line[32];
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			alive--;
		if (alive >= 8) {
			nap(1);
			continue;
		}
		pid_t c = fork();
		if (c < 0) {
			nap(1);
			continue;
		}
		if (c == 0) {
			if (fork() == 0)
				_exit(0);
			if (forked % 2)
				nap(10);
			_exit(0);
		}
		alive++;
		if (++forked % 16 == 0) {
			int n = snprintf(line, sizeof line, "%ld\n", forked);
			(void)!write(1, line, n);
		}
	}
}
