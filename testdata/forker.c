// forker: a parent with children in every state a checkpoint can meet.
//
// Exercises: a process tree (fork), a zombie child not reaped yet, a child
// in its own session (setsid), a pipe between parent and child with bytes
// buffered in it, a parent blocked in wait4 … restored with the same pids.
//
// Protocol: forker <trigger>
// Forks A (exits 3 at once: a zombie until the parent reaps it), B (writes
// "hello from B\n" into a pipe to the parent, then waits for the trigger
// and exits 5) and C (setsid, waits for the trigger, exits 7). Prints
// "ready\n" when A is a zombie and B's bytes are in the pipe. After the
// trigger it reads the pipe, reaps all three checking their exit codes and
// that getpid() and the children's pids are unchanged, prints "OK\n"
// (exit 0) or "FAIL ...\n" (exit 1).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *trigger;

static void say(const char *s) { (void)!write(1, s, strlen(s)); }

static void wait_trigger(void)
{
	struct timespec ms = { 0, 1000000 };
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static int fail(const char *what, long a, long b)
{
	char buf[160];
	snprintf(buf, sizeof buf, "FAIL %s: %ld, want %ld\n", what, a, b);
	say(buf);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	trigger = argv[1];
	pid_t self = getpid();
	int p[2];
	if (pipe(p) != 0)
		return 2;
	pid_t a = fork();
	if (a == 0)
		_exit(3);
	pid_t b = fork();
	if (b == 0) {
		close(p[0]);
		const char *msg = "hello from B\n";
		(void)!write(p[1], msg, strlen(msg));
		wait_trigger();
		_exit(getpid() == b || b == 0 ? 5 : 50);
	}
	pid_t c = fork();
	if (c == 0) {
		close(p[0]);
		close(p[1]);
		if (setsid() < 0)
			_exit(70);
		wait_trigger();
		_exit(getsid(0) == getpid() ? 7 : 71);
	}
	close(p[1]);
	// Ready once A is a zombie (visible without reaping it) and B wrote.
	struct timespec ms = { 0, 1000000 };
	for (;;) {
		siginfo_t si;
		memset(&si, 0, sizeof si);
		if (waitid(P_PID, a, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == a)
			break;
		nanosleep(&ms, NULL);
	}
	nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	say("ready\n");
	wait_trigger();
	if (getpid() != self)
		return fail("getpid", getpid(), self);
	char buf[64] = { 0 };
	ssize_t n = read(p[0], buf, sizeof buf - 1);
	if (n != 13 || strcmp(buf, "hello from B\n") != 0)
		return fail("pipe bytes", n, 13);
	pid_t kids[3] = { a, b, c };
	int codes[3] = { 3, 5, 7 };
	for (int i = 0; i < 3; i++) {
		int st;
		pid_t got = waitpid(kids[i], &st, 0);
		if (got != kids[i])
			return fail("waitpid", got, kids[i]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != codes[i])
			return fail("exit code", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), codes[i]);
	}
	say("OK\n");
	return 0;
}
