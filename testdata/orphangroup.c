// orphangroup: a child left in a process group whose leader has exited
// (the layout zdtm's zombie01 makes), and a layout rtcr still refuses.
//
// Protocol: orphangroup TRIGGER MODE
// MODE:
//   - live: the program forks C; C makes its own process group, clones G
//     with CLONE_PARENT (G is the program's child, in C's group) and
//     exits. Once C is reaped the program writes "ready\n"; G polls every
//     1 ms until TRIGGER exists, checks its group is still C's and exits
//     0 (else 1); the program reaps it, writes "OK\n" and exits 0.
//   - zombie: as live, but G exits at once and stays a zombie: the program
//     writes "ready\n" once G has exited (waitid WNOWAIT), and after the
//     trigger checks that G, a zombie still, is in C's group
//     (getpgid), reaps it, writes "OK\n" and exits 0.
//   - session: the program forks C; C forks G and then calls setsid: G
//     is in the program's session, its parent C in another that G does
//     not lead. "ready\n" once C's setsid is done; after the trigger G
//     checks it is still in the program's session and C that it leads its
//     own, the program reaps C, writes "OK\n" and exits 0 (else "FAIL").
//   - ghostsession: the program forks C; C calls setsid, clones G with
//     CLONE_PARENT (the program's child, in C's session) and exits: G is
//     in a session whose leader is gone (zdtm session02's layout).
//     "ready\n" once C is reaped; after the trigger G checks it is still in
//     session C and exits 0 (else 1), the program reaps it, writes "OK\n"
//     and exits 0.
//   - ghosttwo: the program, a child subreaper, forks A; A forks C; C calls
//     setsid, clones G1 with CLONE_PARENT (A's child), forks G2 and exits:
//     G2 is reparented to the program. Session C, whose leader is gone,
//     has processes under two parents. "ready\n" once A has reaped C;
//     after the trigger G1, G2 and A exit, the program reaps them, writes
//     "OK\n" and exits 0.
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void wait_trigger(const char *trigger)
{
	struct timespec ts = {0, 1000000};
	while (access(trigger, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static int ghostsession(const char *trigger)
{
	int status;
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		if (setsid() < 0)
			_exit(3);
		pid_t c = getpid();
		long g = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (g == 0) {
			wait_trigger(trigger);
			_exit(getsid(0) == c ? 0 : 1);
		}
		_exit(g < 0 ? 3 : 0);
	}
	if (waitpid(c, &status, 0) != c || status != 0) {
		printf("FAIL: C status %d\n", status);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	if (wait(&status) < 0 || status != 0) {
		printf("FAIL: G status %d\n", status);
		return 1;
	}
	printf("OK\n");
	return 0;
}

static int ghosttwo(const char *trigger)
{
	int p[2], status;
	if (pipe(p) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		return 2;
	pid_t a = fork();
	if (a < 0)
		return 2;
	if (a == 0) {
		pid_t c = fork();
		if (c == 0) {
			if (setsid() < 0)
				_exit(3);
			long g1 = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
			if (g1 == 0) {
				wait_trigger(trigger);
				_exit(0);
			}
			pid_t g2 = fork();
			if (g2 == 0) {
				wait_trigger(trigger);
				_exit(0);
			}
			_exit(g1 < 0 || g2 < 0 ? 3 : 0);
		}
		if (c < 0 || waitpid(c, &status, 0) != c || status != 0)
			_exit(3);
		write(p[1], "x", 1);
		while (wait(&status) > 0)
			;
		_exit(0);
	}
	char b;
	if (read(p[0], &b, 1) != 1)
		return 2;
	printf("ready\n");
	fflush(stdout);
	while (wait(&status) > 0)
		;
	printf("OK\n");
	return 0;
}

static int session(const char *trigger)
{
	int p[2], status;
	pid_t sid = getsid(0);
	if (pipe(p) < 0)
		return 2;
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		pid_t g = fork();
		if (g == 0) {
			wait_trigger(trigger);
			_exit(getsid(0) == sid ? 0 : 5);
		}
		if (g < 0 || setsid() < 0)
			_exit(3);
		write(p[1], "x", 1);
		waitpid(g, &status, 0);
		if (status != 0)
			_exit(4);
		_exit(getsid(0) == getpid() ? 0 : 6);
	}
	char b;
	if (read(p[0], &b, 1) != 1)
		return 2;
	printf("ready\n");
	fflush(stdout);
	if (waitpid(c, &status, 0) != c || status != 0) {
		printf("FAIL: C status %d\n", status);
		return 1;
	}
	printf("OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	int status;

	if (argc != 3) {
		fprintf(stderr, "usage: orphangroup TRIGGER live|zombie|session|ghostsession|ghosttwo\n");
		return 2;
	}
	if (strcmp(argv[2], "session") == 0)
		return session(argv[1]);
	if (strcmp(argv[2], "ghostsession") == 0)
		return ghostsession(argv[1]);
	if (strcmp(argv[2], "ghosttwo") == 0)
		return ghosttwo(argv[1]);
	int zombie = strcmp(argv[2], "zombie") == 0;
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
			pid_t pgid = getpgid(0);
			if (zombie)
				_exit(0);
			wait_trigger(argv[1]);
			_exit(getpgid(0) == pgid ? 0 : 1);
		}
		_exit(0);
	}
	if (waitpid(c, &status, 0) != c || status != 0) {
		printf("FAIL: C status %d\n", status);
		return 1;
	}
	siginfo_t info;
	if (zombie) {
		memset(&info, 0, sizeof(info));
		if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) < 0) {
			printf("FAIL: waitid\n");
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	if (zombie) {
		wait_trigger(argv[1]);
		memset(&info, 0, sizeof(info));
		if (waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) < 0) {
			printf("FAIL: waitid after\n");
			return 1;
		}
		pid_t pg = getpgid(info.si_pid);
		if (pg != c) {
			printf("FAIL: zombie %d in group %d, want %d\n", info.si_pid, pg, c);
			return 1;
		}
	}
	pid_t g = wait(&status);
	if (g < 0 || status != 0) {
		printf("FAIL: G status %d\n", status);
		return 1;
	}
	printf("OK\n");
	return 0;
}
