// ctty: a session leader with a controlling terminal, checkpointed.
//
// Protocol: ctty <trigger>   (started with setsid and a terminal as its
// controlling terminal and stdin/stdout/stderr)
// Prints "ready\n", waits for the trigger file, then checks that it still
// leads its session, still has a controlling terminal (/dev/tty opens)
// whose foreground group is its own, prints "OK\n" and exits 0, or
// "FAIL what\n" and exits 1.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what)
{
	char buf[96];
	snprintf(buf, sizeof buf, "FAIL %s\n", what);
	(void)!write(1, buf, strlen(buf));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	if (getsid(0) != getpid())
		return fail("not a session leader at start");
	(void)!write(1, "ready\n", 6);
	struct timespec ms = { 0, 1000000 };
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (getsid(0) != getpid())
		return fail("no longer a session leader");
	int t = open("/dev/tty", O_RDWR);
	if (t < 0)
		return fail("no controlling terminal");
	if (tcgetpgrp(t) != getpgrp())
		return fail("not in the foreground");
	close(t);
	(void)!write(1, "OK\n", 3);
	return 0;
}
