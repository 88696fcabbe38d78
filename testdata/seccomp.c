// seccomp: a process whose threads run under seccomp, for the seccomp
// dump and restore tests.
//
// Protocol: seccomp TRIGGER MODE
// A helper thread is started (after the filters, so it shares them, unless
// the mode says otherwise) and the main thread waits until it runs; the
// main thread then writes "ready\n" and
// blocks reading a pipe. The helper polls every 1 ms until the file
// TRIGGER exists, checks the seccomp state of both threads as MODE wants
// it (from /proc and by making the filtered calls), writes "helper ok\n"
// or what is wrong, and wakes the main thread, which checks itself the
// same way where it can and writes "OK\n" (strict mode: it can only
// write), then ends with exit(2) (the thread only); the helper then exits
// the process with status 0 (1 if a check failed).
//
// Modes:
//   - strict: the main thread in strict mode, the helper not.
//   - filter: no_new_privs, then two filters (getppid fails with errno
//     77; setresuid fails with errno 78, SECCOMP_FILTER_FLAG_LOG), shared
//     by both threads (installed before the helper starts). Every restore
//     injects setresuid: it would fail if the filters applied then.
//   - dropped: as root without no_new_privs, the getppid filter, then all
//     ids set to 65534 (no capability left, no no_new_privs: the process
//     could not install a filter any more, and neither could a restore
//     that installed it after the credentials).
//   - tsync: the helper starts first, then the main thread installs the
//     getppid filter with SECCOMP_FILTER_FLAG_TSYNC.
//   - differ: each thread installs its own filter (other programs).
//   - mainonly: only the main thread has a filter.
//   - notify: a filter that returns SECCOMP_RET_USER_NOTIF for getppid
//     (SECCOMP_FILTER_FLAG_NEW_LISTENER, the listener fd closed).
// The last three are refused by the dump; the target then runs on and its
// checks are not made (the helper only writes "helper ok\n").
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *trigger, *mode;
static int go[2], done[2], started[2];
static pid_t main_tid;
static int failed;

static void die(const char *what)
{
	fprintf(stderr, "seccomp: %s: %s\n", what, strerror(errno));
	exit(2);
}

// install adds a filter making call nr fail with errno err (or hand it to
// a listener when err is 0).
static int install(int nr, int err, unsigned flags)
{
	unsigned ret = err ? SECCOMP_RET_ERRNO | err : SECCOMP_RET_USER_NOTIF;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, ret),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {4, f};

	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

// field returns the value of a "Name:\tvalue" line of a thread's status.
static int field(pid_t tid, const char *name)
{
	char path[64], line[256];
	size_t n = strlen(name);
	int v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	if (!(f = fopen(path, "r")))
		die(path);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			v = atoi(line + n + 1);
	fclose(f);
	return v;
}

static void expect(const char *what, long got, long want)
{
	if (got != want) {
		printf("%s: %ld, want %ld\n", what, got, want);
		fflush(stdout);
		failed = 1;
	}
}

// checkCalls makes the filtered calls in the calling thread.
static void checkCalls(const char *who, int setresuid_filtered)
{
	char what[64];
	long r;

	errno = 0;
	r = syscall(SYS_getppid);
	snprintf(what, sizeof(what), "%s: getppid errno", who);
	expect(what, r < 0 ? errno : 0, 77);
	if (setresuid_filtered) {
		errno = 0;
		r = syscall(SYS_setresuid, -1, -1, -1);
		snprintf(what, sizeof(what), "%s: setresuid errno", who);
		expect(what, r < 0 ? errno : 0, 78);
	}
}

static int checked(void)
{
	return strcmp(mode, "strict") == 0 || strcmp(mode, "filter") == 0 ||
	       strcmp(mode, "dropped") == 0 || strcmp(mode, "tsync") == 0;
}

static void *helper(void *arg)
{
	struct timespec ts = {0, 1000000};
	pid_t self = syscall(SYS_gettid);
	char c = 'x';

	(void)arg;
	if (strcmp(mode, "differ") == 0 && install(SYS_getpid, 79, 0) < 0)
		die("helper filter");
	if (write(started[1], &c, 1) != 1)
		die("write started");
	while (access(trigger, F_OK) != 0)
		nanosleep(&ts, NULL);
	if (checked()) {
		if (strcmp(mode, "strict") == 0) {
			expect("main: Seccomp", field(main_tid, "Seccomp"), 1);
			expect("helper: Seccomp", field(self, "Seccomp"), 0);
		} else {
			int n = strcmp(mode, "filter") == 0 ? 2 : 1;

			expect("main: Seccomp", field(main_tid, "Seccomp"), 2);
			expect("helper: Seccomp", field(self, "Seccomp"), 2);
			expect("main: Seccomp_filters", field(main_tid, "Seccomp_filters"), n);
			expect("helper: Seccomp_filters", field(self, "Seccomp_filters"), n);
			checkCalls("helper", n == 2);
		}
	}
	if (!failed)
		printf("helper ok\n");
	fflush(stdout);
	if (write(go[1], &c, 1) != 1)
		die("write go");
	if (read(done[0], &c, 1) != 1)
		die("read done");
	exit(failed);
}

int main(int argc, char **argv)
{
	pthread_t th;
	char c;

	if (argc != 3) {
		fprintf(stderr, "usage: seccomp TRIGGER MODE\n");
		return 2;
	}
	trigger = argv[1];
	mode = argv[2];
	main_tid = syscall(SYS_gettid);
	if (pipe(go) < 0 || pipe(done) < 0 || pipe(started) < 0)
		die("pipe");
	if (strcmp(mode, "filter") == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || install(SYS_getppid, 77, 0) < 0 ||
		    install(SYS_setresuid, 78, SECCOMP_FILTER_FLAG_LOG) < 0)
			die("filter");
	} else if (strcmp(mode, "dropped") == 0) {
		if (install(SYS_getppid, 77, 0) < 0)
			die("filter");
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			die("drop root");
	} else if (strcmp(mode, "notify") == 0) {
		int fd = install(SYS_getppid, 0, SECCOMP_FILTER_FLAG_NEW_LISTENER);

		if (fd < 0)
			die("filter");
		close(fd);
	}
	if (pthread_create(&th, NULL, helper, NULL))
		die("pthread_create");
	if (read(started[0], &c, 1) != 1)
		die("read started");
	if (strcmp(mode, "tsync") == 0 && install(SYS_getppid, 77, SECCOMP_FILTER_FLAG_TSYNC) != 0)
		die("tsync filter");
	if ((strcmp(mode, "differ") == 0 || strcmp(mode, "mainonly") == 0) && install(SYS_getppid, 77, 0) < 0)
		die("main filter");
	if (strcmp(mode, "strict") == 0) {
		printf("ready\n");
		fflush(stdout);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) < 0)
			die("strict mode");
	} else {
		printf("ready\n");
		fflush(stdout);
	}
	if (read(go[0], &c, 1) != 1)
		syscall(SYS_exit, 3);
	if (checked() && strcmp(mode, "strict") != 0)
		checkCalls("main", strcmp(mode, "filter") == 0);
	if (write(1, "OK\n", 3) != 3 || write(done[1], &c, 1) != 1)
		syscall(SYS_exit, 3);
	syscall(SYS_exit, 0);
	return 0;
}
