// procstate: sets up a known, non-default state of every per-process and
// per-thread resource kind rtcr saves, then idles, for the round-trip tests
// of internal/sig, attr, files and task.
//
// Protocol: procstate DIR [opath]
// The program chdirs into DIR and sets, in this order:
//   signal actions: SIGUSR1 handler, SA_RESTART|SA_SIGINFO, mask {SIGUSR2,
//     SIGTERM, SIGRTMIN+1}; SIGUSR2 handler, SA_ONSTACK|SA_NODEFER;
//     SIGHUP handler, SA_RESETHAND; SIGRTMIN+5 handler, SA_SIGINFO|SA_RESTART;
//     SIGPIPE ignored; SIGCHLD default with SA_NOCLDSTOP;
//   umask 027; personality ADDR_NO_RANDOMIZE|ADDR_COMPAT_LAYOUT (at run
//     time it is only recorded); RLIMIT_NOFILE soft 200, RLIMIT_CORE 0/0,
//     RLIMIT_MSGQUEUE 4096/8192; oom_score_adj 123; THP disabled
//     (PR_SET_THP_DISABLE); registered for private expedited membarrier;
//     main thread SCHED_BATCH, nice 5, reset on fork;
//   thread: blocked mask {SIGUSR2, SIGRTMIN+3}; a 64 KiB alternate signal
//     stack; name "rt-kind"; MXCSR rounding toward zero; xmm15 a pattern;
//   fds (stdin/stdout/stderr are the caller's):
//     3  DIR/rw   O_RDWR, 4096 bytes, at offset 100
//     4  DIR/ro   O_RDONLY|O_CLOEXEC, 1000 bytes, at offset 7
//     5  DIR/log  O_WRONLY|O_APPEND|O_CREAT, 6 bytes written (offset 6)
//     6  DIR      O_RDONLY|O_DIRECTORY|O_CLOEXEC
//     20 /dev/null O_WRONLY|O_CLOEXEC (opened at 7, moved by dup3)
//     7  DIR/rw   O_PATH, only with the "opath" argument
// then writes "ready\n" to stdout and sleeps in pause() forever. The
// handlers are never meant to run; each one exits with status 9.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "procstate: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_signal(int sig)
{
	(void)sig;
	_exit(9);
}

static void on_siginfo(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	_exit(9);
}

static void action(int sig, int flags, int info, const int *mask, int nmask)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (info)
		sa.sa_sigaction = on_siginfo;
	else
		sa.sa_handler = on_signal;
	sa.sa_flags = flags | (info ? SA_SIGINFO : 0);
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < nmask; i++)
		sigaddset(&sa.sa_mask, mask[i]);
	if (sigaction(sig, &sa, NULL) != 0)
		die("sigaction");
}

static void limit(int res, rlim_t cur, rlim_t max)
{
	struct rlimit rl = { .rlim_cur = cur, .rlim_max = max };
	if (setrlimit(res, &rl) != 0)
		die("setrlimit");
}

// create writes n bytes to DIR/name and opens it again with flags.
static int create(const char *name, size_t n, int flags)
{
	char buf[4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)('a' + i % 26);
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != (ssize_t)n || close(fd) != 0)
		die(name);
	fd = open(name, flags);
	if (fd < 0)
		die(name);
	return fd;
}

static void expect_fd(int got, int want)
{
	if (got != want) {
		fprintf(stderr, "procstate: got fd %d, want %d\n", got, want);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "opath") != 0)) {
		fprintf(stderr, "usage: procstate DIR [opath]\n");
		return 2;
	}
	if (chdir(argv[1]) != 0)
		die("chdir");

	int usr1_mask[] = { SIGUSR2, SIGTERM, SIGRTMIN + 1 };
	action(SIGUSR1, SA_RESTART, 1, usr1_mask, 3);
	action(SIGUSR2, SA_ONSTACK | SA_NODEFER, 0, NULL, 0);
	action(SIGHUP, SA_RESETHAND, 0, NULL, 0);
	action(SIGRTMIN + 5, SA_RESTART, 1, NULL, 0);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		die("ignore SIGPIPE");
	struct sigaction chld;
	memset(&chld, 0, sizeof(chld));
	chld.sa_handler = SIG_DFL;
	chld.sa_flags = SA_NOCLDSTOP;
	if (sigaction(SIGCHLD, &chld, NULL) != 0)
		die("sigaction SIGCHLD");

	umask(027);
	if (personality(ADDR_NO_RANDOMIZE | ADDR_COMPAT_LAYOUT) == -1)
		die("personality");
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) != 0)
		die("getrlimit");
	limit(RLIMIT_NOFILE, 200, nofile.rlim_max);
	limit(RLIMIT_CORE, 0, 0);
	limit(RLIMIT_MSGQUEUE, 4096, 8192);
	int oom = open("/proc/self/oom_score_adj", O_WRONLY);
	if (oom < 0 || write(oom, "123", 3) != 3 || close(oom) != 0)
		die("oom_score_adj");
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
		die("PR_SET_THP_DISABLE");
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
		die("membarrier register");
	struct sched_param sp = {0};
	if (sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &sp) != 0 || setpriority(PRIO_PROCESS, 0, 5) != 0)
		die("SCHED_BATCH, nice 5");

	expect_fd(create("rw", 4096, O_RDWR), 3);
	if (lseek(3, 100, SEEK_SET) != 100)
		die("lseek rw");
	expect_fd(create("ro", 1000, O_RDONLY | O_CLOEXEC), 4);
	if (lseek(4, 7, SEEK_SET) != 7)
		die("lseek ro");
	expect_fd(open("log", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0640), 5);
	if (write(5, "hello\n", 6) != 6)
		die("write log");
	expect_fd(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), 6);
	int null = open("/dev/null", O_WRONLY);
	if (null < 0 || dup3(null, 20, O_CLOEXEC) != 20 || close(null) != 0)
		die("/dev/null at 20");
	if (argc == 3)
		expect_fd(open("rw", O_PATH), 7);

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN + 3);
	if (sigprocmask(SIG_BLOCK, &block, NULL) != 0)
		die("sigprocmask");
	stack_t ss = { .ss_size = 64 << 10, .ss_flags = 0 };
	ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ss.ss_sp == MAP_FAILED || sigaltstack(&ss, NULL) != 0)
		die("sigaltstack");
	if (prctl(PR_SET_NAME, "rt-kind", 0, 0, 0) != 0)
		die("prctl PR_SET_NAME");

	// The FPU state last: write() and pause() use no SSE register.
	unsigned int mxcsr = 0x1f80 | (3u << 13); // all masked, toward zero
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	__asm__ volatile("movq %0, %%xmm15" : : "r"(0x1122334455667788ULL) : "xmm15");
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	for (;;)
		pause();
}
