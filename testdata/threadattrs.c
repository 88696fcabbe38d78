// threadattrs: a process with a helper thread whose per-process and
// per-thread attributes are set as MODE says, for the attribute round-trip
// and refusal tests.
//
// Protocol: threadattrs TRIGGER MODE
// The main thread sets its part of MODE, starts the helper, which sets its
// own part, waits for it, writes "ready\n" and polls every 10 ms until the
// file TRIGGER exists. Then the helper checks its own state, the main
// thread its own, and the program writes "OK\n" and exits 0, or writes
// what differs and exits 1. Each thread checks from inside, with the calls
// that read the attribute for the calling thread.
//
// Modes:
//   - affinity: main thread on CPU 1 only, helper on CPU 0 only.
//   - ioprio: main best-effort level 6, helper idle class.
//   - timerslack: main 123456 ns, helper 777777 ns.
//   - mempolicy: main MPOL_PREFERRED node 0, helper MPOL_BIND with
//     MPOL_F_STATIC_NODES node 0.
//   - coredump: /proc/self/coredump_filter 0x7b.
//   - ksm: PR_SET_MEMORY_MERGE 1.
//   - creds: the helper alone (raw system calls, which glibc does not
//     spread to the other threads) sets its effective gid to 1001 and
//     effective uid to 1000; the main thread stays root.
//   - unsharefs: the helper calls unshare(CLONE_FS) (refused by the dump).
//   - clonefs: a child made with clone(CLONE_FS) sleeps until killed at
//     the trigger (refused by the dump).
//   - loginuid: the main thread writes 1234 to /proc/self/loginuid (before
//     the helper starts, which inherits it).
//   - tsc: the helper makes rdtsc fault (PR_SET_TSC PR_TSC_SIGSEGV); the
//     main thread keeps it.
//   - mce: machine-check kill policy early in the helper, late in main.
//   - mdwe: PR_SET_MDWE PR_MDWE_REFUSE_EXEC_GAIN; the check also expects
//     mprotect adding PROT_EXEC to fail.
//   - sud: the helper turns syscall user dispatch on, its selector
//     allowing every call (refused by the dump).
//   - plain: nothing (the test moves the process into a cgroup).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_BE(l) ((2 << 13) | (l))
#define IOPRIO_IDLE ((3 << 13) | 7)
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_F_STATIC_NODES (1 << 15)
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66

static const char *trigger, *mode;
static volatile int helper_set, helper_go, helper_done;
static char helper_msg[256];
static pid_t child;
static char sud_selector; // SYSCALL_DISPATCH_FILTER_ALLOW

static void die(const char *what)
{
	fprintf(stderr, "threadattrs: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void pause_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

static int is(const char *m) { return strcmp(mode, m) == 0; }

// set gives the calling thread (main or helper) its part of the mode.
static void set(int helper)
{
	if (is("affinity")) {
		cpu_set_t s;
		CPU_ZERO(&s);
		CPU_SET(helper ? 0 : 1, &s);
		if (sched_setaffinity(0, sizeof(s), &s) != 0)
			die("sched_setaffinity");
	} else if (is("ioprio")) {
		if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, helper ? IOPRIO_IDLE : IOPRIO_BE(6)) != 0)
			die("ioprio_set");
	} else if (is("timerslack")) {
		if (prctl(PR_SET_TIMERSLACK, helper ? 777777UL : 123456UL, 0, 0, 0) != 0)
			die("PR_SET_TIMERSLACK");
	} else if (is("mempolicy")) {
		unsigned long nodes = 1;
		int m = helper ? (MPOL_BIND | MPOL_F_STATIC_NODES) : MPOL_PREFERRED;
		if (syscall(SYS_set_mempolicy, m, &nodes, 64) != 0)
			die("set_mempolicy");
	} else if (is("coredump") && !helper) {
		int fd = open("/proc/self/coredump_filter", O_WRONLY);
		if (fd < 0 || write(fd, "0x7b", 4) != 4)
			die("coredump_filter");
		close(fd);
	} else if (is("tsc") && helper) {
		if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) != 0)
			die("PR_SET_TSC");
	} else if (is("mce")) {
		if (prctl(PR_MCE_KILL, PR_MCE_KILL_SET, helper ? PR_MCE_KILL_EARLY : PR_MCE_KILL_LATE, 0, 0) != 0)
			die("PR_MCE_KILL");
	} else if (is("mdwe") && !helper) {
		if (prctl(PR_SET_MDWE, 1, 0, 0, 0) != 0)
			die("PR_SET_MDWE");
	} else if (is("loginuid") && !helper) {
		int fd = open("/proc/self/loginuid", O_WRONLY);
		if (fd < 0 || write(fd, "1234", 4) != 4)
			die("loginuid");
		close(fd);
	} else if (is("ksm") && !helper) {
		if (prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0)
			die("PR_SET_MEMORY_MERGE");
	} else if (is("creds") && helper) {
		if (syscall(SYS_setresgid, -1, 1001, -1) != 0)
			die("setresgid");
		if (syscall(SYS_setresuid, -1, 1000, -1) != 0)
			die("setresuid");
	} else if (is("sud") && helper) {
		if (prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, 1 /* ON */, 0, 0, &sud_selector) != 0)
			die("PR_SET_SYSCALL_USER_DISPATCH");
	} else if (is("unsharefs") && helper) {
		if (unshare(CLONE_FS) != 0)
			die("unshare");
	}
}

// check writes into msg what differs in the calling thread's state.
static void check(int helper, char *msg, size_t n)
{
	msg[0] = 0;
	const char *who = helper ? "helper" : "main";
	if (is("affinity")) {
		cpu_set_t s;
		if (sched_getaffinity(0, sizeof(s), &s) != 0)
			die("sched_getaffinity");
		int want = helper ? 0 : 1;
		if (CPU_COUNT(&s) != 1 || !CPU_ISSET(want, &s))
			snprintf(msg, n, "%s: affinity has %d CPUs, want only %d\n", who, CPU_COUNT(&s), want);
	} else if (is("ioprio")) {
		long p = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
		long want = helper ? IOPRIO_IDLE : IOPRIO_BE(6);
		if (p != want)
			snprintf(msg, n, "%s: ioprio %#lx, want %#lx\n", who, p, want);
	} else if (is("timerslack")) {
		long v = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
		long want = helper ? 777777 : 123456;
		if (v != want)
			snprintf(msg, n, "%s: timer slack %ld, want %ld\n", who, v, want);
	} else if (is("mempolicy")) {
		int m = -1;
		unsigned long nodes[16] = {0};
		if (syscall(SYS_get_mempolicy, &m, nodes, 1024, 0, 0) != 0)
			die("get_mempolicy");
		int want = helper ? (MPOL_BIND | MPOL_F_STATIC_NODES) : MPOL_PREFERRED;
		if (m != want || nodes[0] != 1)
			snprintf(msg, n, "%s: memory policy %#x nodes %#lx, want %#x nodes 0x1\n", who, m, nodes[0], want);
	} else if (is("coredump") && !helper) {
		char buf[32] = {0};
		int fd = open("/proc/self/coredump_filter", O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
			die("coredump_filter");
		close(fd);
		if (strtoul(buf, NULL, 16) != 0x7b)
			snprintf(msg, n, "%s: coredump_filter %s, want 0x7b\n", who, buf);
	} else if (is("tsc")) {
		int v = -1;
		if (prctl(PR_GET_TSC, &v, 0, 0, 0) != 0)
			die("PR_GET_TSC");
		int want = helper ? PR_TSC_SIGSEGV : PR_TSC_ENABLE;
		if (v != want)
			snprintf(msg, n, "%s: PR_GET_TSC %d, want %d\n", who, v, want);
	} else if (is("mce")) {
		int v = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
		int want = helper ? PR_MCE_KILL_EARLY : PR_MCE_KILL_LATE;
		if (v != want)
			snprintf(msg, n, "%s: PR_MCE_KILL_GET %d, want %d\n", who, v, want);
	} else if (is("mdwe") && !helper) {
		int v = prctl(PR_GET_MDWE, 0, 0, 0, 0);
		void *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			die("mmap");
		int gained = mprotect(m, 4096, PROT_READ | PROT_EXEC) == 0;
		if (v != 1 || gained)
			snprintf(msg, n, "%s: PR_GET_MDWE %d (want 1), PROT_EXEC %s\n", who, v, gained ? "gained" : "refused");
	} else if (is("loginuid")) {
		char buf[32] = {0};
		int fd = open("/proc/thread-self/loginuid", O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
			die("loginuid");
		close(fd);
		if (strcmp(buf, "1234") != 0)
			snprintf(msg, n, "%s: loginuid %s, want 1234\n", who, buf);
	} else if (is("ksm") && !helper) {
		int v = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
		if (v != 1)
			snprintf(msg, n, "%s: PR_GET_MEMORY_MERGE %d, want 1\n", who, v);
	} else if (is("creds")) {
		uid_t r, e, s;
		gid_t gr, ge, gs;
		syscall(SYS_getresuid, &r, &e, &s);
		syscall(SYS_getresgid, &gr, &ge, &gs);
		unsigned we = helper ? 1000 : 0, wg = helper ? 1001 : 0;
		if (r != 0 || e != we || s != 0 || gr != 0 || ge != wg || gs != 0)
			snprintf(msg, n, "%s: uids %u %u %u gids %u %u %u, want 0 %u 0 and 0 %u 0\n",
				 who, r, e, s, gr, ge, gs, we, wg);
	}
}

static void *helper(void *arg)
{
	(void)arg;
	set(1);
	helper_set = 1;
	while (!helper_go)
		pause_ms(10);
	check(1, helper_msg, sizeof(helper_msg));
	helper_done = 1;
	return NULL;
}

static int sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: threadattrs TRIGGER MODE\n");
		return 2;
	}
	trigger = argv[1];
	mode = argv[2];
	set(0);
	if (is("clonefs")) {
		static char stack[64 << 10];
		child = clone(sleeper, stack + sizeof(stack), CLONE_FS | SIGCHLD, NULL);
		if (child < 0)
			die("clone");
	}
	pthread_t th;
	if (pthread_create(&th, NULL, helper, NULL) != 0)
		die("pthread_create");
	while (!helper_set)
		pause_ms(1);
	printf("ready\n");
	fflush(stdout);
	while (access(trigger, F_OK) != 0)
		pause_ms(10);
	helper_go = 1;
	while (!helper_done)
		pause_ms(1);
	char msg[256];
	check(0, msg, sizeof(msg));
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (msg[0] || helper_msg[0]) {
		printf("%s%s", msg, helper_msg);
		return 1;
	}
	printf("OK\n");
	return 0;
}
