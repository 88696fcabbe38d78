// lease: holds file leases (F_SETLEASE) for the lease dump and restore
// tests.
//
// Protocol: lease TRIGGER MODE
// In its working directory the program opens "r" O_RDONLY as fd 3 with a
// read lease and "w" O_WRONLY as fd 4 with a write lease (both files
// created empty), counts SIGIO (the signal a lease break sends to the
// file's owner, which taking a lease makes the process), writes "ready\n"
// and polls every 1 ms until the file TRIGGER exists.
// MODE:
//   - plain: after the trigger it checks F_GETLEASE (fd 3 F_RDLCK, fd 4
//     F_WRLCK) and F_GETOWN (its pid) on both, writes "parent leases ok\n" (or
//     "FAIL: …" and exits 1), then waits up to 60 s for SIGIO and the
//     file "broken" (the test opens "r" for writing and "w" for reading
//     without blocking, which breaks both leases, the two signals maybe
//     merged into one, then creates "broken"), gives the leases up, writes "OK\n" and
//     exits 0.
//   - fork: as plain, but a child forked after the leases (sharing the
//     open file descriptions) checks F_GETLEASE on both fds too after the
//     trigger, writes "child leases ok\n" and exits 0; the parent waits
//     for it before its own checks.
//   - noowner: as plain, but fd 3's owner is cleared after the leases
//     with F_SETOWN_EX F_OWNER_TID 0 (which F_GETOWN_EX reports as it
//     reports an owner never set), and F_GETOWN of fd 3 must be 0.
//   - breaking: no checks: after the trigger it gives the leases up and
//     writes "OK\n" (the test breaks a lease before the dump).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t sigios;

static void on_io(int sig)
{
	(void)sig;
	sigios++;
}

static void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

static void expect(const char *what, int got, int want)
{
	if (got != want) {
		char line[256];
		FILE *f = fopen("/proc/locks", "r");

		printf("FAIL: %s: %d, want %d\n", what, got, want);
		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "LEASE"))
				printf("  /proc/locks: %s", line);
		fflush(stdout);
		exit(1);
	}
}

static void check_leases(void)
{
	expect("F_GETLEASE of fd 3", fcntl(3, F_GETLEASE), F_RDLCK);
	expect("F_GETLEASE of fd 4", fcntl(4, F_GETLEASE), F_WRLCK);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int fork_mode, breaking;
	pid_t child = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: lease TRIGGER plain|fork|breaking\n");
		return 2;
	}
	fork_mode = strcmp(argv[2], "fork") == 0;
	breaking = strcmp(argv[2], "breaking") == 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_io;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGIO, &sa, NULL) != 0)
		die("sigaction");
	if (open("r", O_RDONLY | O_CREAT, 0644) != 3 || open("w", O_WRONLY | O_CREAT, 0644) != 4)
		die("open r and w as fds 3 and 4");
	if (fcntl(3, F_SETLEASE, F_RDLCK) != 0 || fcntl(4, F_SETLEASE, F_WRLCK) != 0)
		die("F_SETLEASE");
	if (strcmp(argv[2], "noowner") == 0) {
		struct f_owner_ex none = {.type = F_OWNER_TID, .pid = 0};

		if (fcntl(3, F_SETOWN_EX, &none) != 0)
			die("F_SETOWN_EX F_OWNER_TID 0");
	}
	if (fork_mode) {
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			while (access(argv[1], F_OK) != 0)
				sleep_ms(1);
			check_leases();
			printf("child leases ok\n");
			fflush(stdout);
			_exit(0);
		}
	}
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		sleep_ms(1);
	if (!breaking) {
		if (child > 0) {
			int st;

			if (waitpid(child, &st, 0) != child)
				die("waitpid");
			expect("child's exit status", st, 0);
		}
		check_leases();
		expect("F_GETOWN of fd 3", fcntl(3, F_GETOWN), strcmp(argv[2], "noowner") == 0 ? 0 : getpid());
		expect("F_GETOWN of fd 4", fcntl(4, F_GETOWN), getpid());
		printf("parent leases ok\n");
		fflush(stdout);
		for (int i = 0; i < 60000 && (sigios < 1 || access("broken", F_OK) != 0); i++)
			sleep_ms(1);
		expect("SIGIO of the lease breaks", sigios > 0, 1);
	}
	if (fcntl(3, F_SETLEASE, F_UNLCK) != 0 || fcntl(4, F_SETLEASE, F_UNLCK) != 0)
		die("F_SETLEASE F_UNLCK");
	printf("OK\n");
	fflush(stdout);
	return 0;
}
