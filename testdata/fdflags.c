// fdflags: sets file status flags and SIGIO ownership on its fds for the
// checkpoint/restore tests of internal/files, waits for a trigger and then
// checks they still hold.
//
// Protocol: fdflags TRIGGER [flock|posixlock|extowner]
// In its working directory the program sets up:
//   3, 4  a pipe; the read end 3 O_NONBLOCK, the write end 4 blocking;
//   5     "app", O_WRONLY|O_APPEND, "one\n" written;
//   6, 7  a pipe; the read end 6 O_ASYNC, owned (F_SETOWN_EX F_OWNER_PID)
//         by the process itself, signal SIGRTMIN+2 (F_SETSIG), which a
//         SA_SIGINFO handler counts, recording si_fd;
//   8     an epoll instance with O_NONBLOCK, watching fd 6 for EPOLLIN
//         with data 0x1234;
//   9     an eventfd with counter 3, EFD_SEMAPHORE|EFD_NONBLOCK;
//   10    with "flock": "locked", O_RDWR, flock(LOCK_EX); with
//         "posixlock": the same with a POSIX write lock (F_SETLK); with
//         "extowner": a pipe read end owned by the parent process.
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists. Then it checks, printing "OK\n" and exiting 0 when all
// hold, "FAIL: reason\n" and exiting 1 otherwise:
//   - fd 3 has O_NONBLOCK (and a read of the empty pipe fails EAGAIN),
//     fd 4 does not;
//   - fd 5 has O_APPEND: after lseek(5, 0) a write of "two\n" lands at the
//     end ("one\ntwo\n");
//   - fd 6 has O_ASYNC, owner F_OWNER_PID getpid(), signal SIGRTMIN+2; a
//     byte written to fd 7 brings SIGRTMIN+2 with si_fd 6 within 5 s;
//   - fd 8 has O_NONBLOCK and reports EPOLLIN with data 0x1234 for fd 6;
//   - fd 9 reads 1 three times, then fails EAGAIN.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ios, io_fd = -1;

static void on_io(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	ios++;
	io_fd = si->si_fd;
}

static void die(const char *what)
{
	fprintf(stderr, "fdflags: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why, long a, long b)
{
	printf("FAIL: %s (%ld, %ld)\n", why, a, b);
	exit(1);
}

static void expect_fd(int got, int want)
{
	if (got != want) {
		fprintf(stderr, "fdflags: got fd %d, want %d\n", got, want);
		exit(2);
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int getfl(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		fail("F_GETFL", fd, errno);
	return fl;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: fdflags TRIGGER [flock|posixlock|extowner]\n");
		return 2;
	}
	int sig = SIGRTMIN + 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_io;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) != 0)
		die("sigaction");

	int p[2];
	if (pipe(p) != 0)
		die("pipe");
	expect_fd(p[0], 3);
	if (fcntl(3, F_SETFL, O_NONBLOCK) != 0)
		die("O_NONBLOCK");
	expect_fd(open("app", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644), 5);
	if (write(5, "one\n", 4) != 4)
		die("write app");
	if (pipe(p) != 0)
		die("pipe");
	expect_fd(p[0], 6);
	struct f_owner_ex own = { .type = F_OWNER_PID, .pid = getpid() };
	if (fcntl(6, F_SETOWN_EX, &own) != 0 || fcntl(6, F_SETSIG, sig) != 0)
		die("owner");
	if (fcntl(6, F_SETFL, O_ASYNC) != 0)
		die("O_ASYNC");
	expect_fd(epoll_create1(0), 8);
	if (fcntl(8, F_SETFL, O_NONBLOCK) != 0)
		die("epoll O_NONBLOCK");
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234 };
	if (epoll_ctl(8, EPOLL_CTL_ADD, 6, &ev) != 0)
		die("epoll_ctl");
	expect_fd(eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK), 9);
	if (argc == 3 && strcmp(argv[2], "extowner") == 0) {
		if (pipe(p) != 0)
			die("pipe");
		expect_fd(p[0], 10);
		struct f_owner_ex parent = { .type = F_OWNER_PID, .pid = getppid() };
		if (fcntl(10, F_SETOWN_EX, &parent) != 0)
			die("owner of fd 10");
	} else if (argc == 3) {
		expect_fd(open("locked", O_RDWR | O_CREAT, 0644), 10);
		if (strcmp(argv[2], "flock") == 0) {
			if (flock(10, LOCK_EX) != 0)
				die("flock");
		} else {
			struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
			if (fcntl(10, F_SETLK, &fl) != 0)
				die("F_SETLK");
		}
	}

	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	while (access(argv[1], F_OK) != 0)
		sleep_ms(1);

	if (!(getfl(3) & O_NONBLOCK))
		fail("fd 3 lost O_NONBLOCK", getfl(3), 0);
	char c;
	if (read(3, &c, 1) != -1 || errno != EAGAIN)
		fail("read of the empty non-blocking pipe", errno, 0);
	if (getfl(4) & O_NONBLOCK)
		fail("fd 4 got O_NONBLOCK", getfl(4), 0);

	if (!(getfl(5) & O_APPEND))
		fail("fd 5 lost O_APPEND", getfl(5), 0);
	if (lseek(5, 0, SEEK_SET) != 0 || write(5, "two\n", 4) != 4)
		die("write app again");
	char buf[16] = { 0 };
	int app = open("app", O_RDONLY);
	if (app < 0 || read(app, buf, sizeof(buf) - 1) < 0)
		die("read app");
	if (strcmp(buf, "one\ntwo\n") != 0)
		fail("app is not one, two: the write did not append", (long)strlen(buf), 0);

	if (!(getfl(6) & O_ASYNC))
		fail("fd 6 lost O_ASYNC", getfl(6), 0);
	struct f_owner_ex got = { 0 };
	if (fcntl(6, F_GETOWN_EX, &got) != 0)
		die("F_GETOWN_EX");
	if (got.type != F_OWNER_PID || got.pid != getpid())
		fail("fd 6 owner (type, pid)", got.type, got.pid);
	if (fcntl(6, F_GETSIG) != sig)
		fail("fd 6 signal", fcntl(6, F_GETSIG), sig);
	if (write(7, "x", 1) != 1)
		die("write pipe");
	for (int i = 0; i < 5000 && ios == 0; i++)
		sleep_ms(1);
	if (ios == 0)
		fail("no I/O signal within 5 s", 0, 0);
	if (io_fd != 6)
		fail("I/O signal si_fd", io_fd, 6);

	if (!(getfl(8) & O_NONBLOCK))
		fail("epoll fd 8 lost O_NONBLOCK", getfl(8), 0);
	struct epoll_event got_ev = { 0 };
	int n = epoll_wait(8, &got_ev, 1, 0);
	if (n != 1 || got_ev.events != EPOLLIN || got_ev.data.u64 != 0x1234)
		fail("epoll event for fd 6 (n, data)", n, (long)got_ev.data.u64);
	for (int i = 0; i < 3; i++) {
		uint64_t v = 0;
		if (read(9, &v, 8) != 8 || v != 1)
			fail("eventfd semaphore read (i, value)", i, (long)v);
	}
	uint64_t v;
	if (read(9, &v, 8) != -1 || errno != EAGAIN)
		fail("eventfd after 3 reads", errno, 0);
	printf("OK\n");
	return 0;
}
