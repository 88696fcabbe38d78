// ptypair: a pseudo-terminal pair held inside the tree, for the
// checkpoint/restore test of pty pairs.
//
// Protocol: ptypair TRIGGER [unread|rawunread]
// The parent opens a pty master (fd 3), sets the window size to 33 rows
// by 101 columns and the termios (ECHO off, VINTR ^G) through it, and
// forks a child that starts a session with the slave as its controlling
// terminal and fds 0-2, writes "buffered\n" (which the parent leaves
// unread), then reads lines: "ping\n" is answered "echo: ping\n";
// "check\n" with "child ok\n" when it still leads its session, is in the
// terminal's foreground group, can open /dev/tty and sees the window
// size, else "child fail: reason\n"; "quit\n" makes it exit 0.
// Once the child's output is buffered, the parent writes "ready\n" to its
// stdout and polls every 1 ms until TRIGGER exists. Then it requires, on
// the master: the buffered "buffered\r\n" first, "echo: ping\r\n" after
// "ping\n", "child ok\r\n" after "check\n", the window size and termios
// as set; it sends "quit\n", waits for the child, prints "OK\n" and exits
// 0, or prints "FAIL: reason\n" and exits 1.
// With "unread" the child reads nothing before TRIGGER exists and the
// parent writes "pending\nsecond\n" to the master before "ready": input
// the slave side has not read at the checkpoint, two lines in canonical
// mode; their echo must come after "buffered", one line each. With
// "rawunread" the same, the child's terminal in non-canonical mode
// (ICANON off, set before it writes "buffered"). With "partial" as
// "unread", but the parent writes only "pend" before "ready" (a partial
// line) and "ing\n" after the trigger: the echo is "echo: pending".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "ptypair: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why, const char *got)
{
	printf("FAIL: %s (got \"%s\")\n", why, got);
	exit(1);
}

static int child_main(const char *name, const char *trigger, int raw)
{
	if (setsid() < 0)
		die("setsid");
	int s = open(name, O_RDWR);
	if (s < 0)
		die("open slave");
	dup2(s, 0);
	dup2(s, 1);
	dup2(s, 2);
	if (s > 2)
		close(s);
	close(3);
	struct termios t;
	if (raw && (tcgetattr(0, &t) != 0 || (t.c_lflag &= ~ICANON, tcsetattr(0, TCSANOW, &t) != 0)))
		die("non-canonical mode");
	printf("buffered\n");
	fflush(stdout);
	struct timespec ms = { 0, 1000000 };
	while (trigger && access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	char line[256];
	while (fgets(line, sizeof(line), stdin)) {
		if (strcmp(line, "quit\n") == 0)
			return 0;
		if (strcmp(line, "check\n") != 0) {
			printf("echo: %s", line);
			fflush(stdout);
			continue;
		}
		struct winsize ws;
		int tty = open("/dev/tty", O_RDWR);
		if (getsid(0) != getpid())
			printf("child fail: not a session leader\n");
		else if (tcgetpgrp(0) != getpgrp())
			printf("child fail: foreground group %d, mine %d\n", tcgetpgrp(0), getpgrp());
		else if (tty < 0)
			printf("child fail: open /dev/tty: %s\n", strerror(errno));
		else if (ioctl(0, TIOCGWINSZ, &ws) != 0 || ws.ws_row != 33 || ws.ws_col != 101)
			printf("child fail: window size %dx%d\n", ws.ws_row, ws.ws_col);
		else
			printf("child ok\n");
		fflush(stdout);
		if (tty >= 0)
			close(tty);
	}
	return 3;
}

// expect sends send (if not NULL) to the master and reads from it until
// want has arrived, which must be the first bytes read.
static void expect(int m, const char *send, const char *want)
{
	if (send && write(m, send, strlen(send)) != (ssize_t)strlen(send))
		die("write master");
	char got[256];
	size_t n = 0, len = strlen(want);
	while (n < len) {
		struct pollfd p = { .fd = m, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1) {
			got[n] = 0;
			fail("no answer on the master within 5 s", got);
		}
		ssize_t r = read(m, got + n, len - n);
		if (r <= 0) {
			got[n] = 0;
			fail("read master", got);
		}
		n += r;
	}
	got[n] = 0;
	if (strcmp(got, want) != 0)
		fail(want, got);
}

int main(int argc, char **argv)
{
	int raw = argc == 3 && strcmp(argv[2], "rawunread") == 0;
	int partial = argc == 3 && strcmp(argv[2], "partial") == 0;
	int unread = raw || partial || (argc == 3 && strcmp(argv[2], "unread") == 0);
	if (argc != 2 && !unread) {
		fprintf(stderr, "usage: ptypair TRIGGER [unread|rawunread|partial]\n");
		return 2;
	}
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m != 3)
		die("posix_openpt as fd 3");
	if (grantpt(m) != 0 || unlockpt(m) != 0)
		die("unlockpt");
	char name[64];
	if (ptsname_r(m, name, sizeof(name)) != 0)
		die("ptsname");
	struct winsize ws = { .ws_row = 33, .ws_col = 101 };
	if (ioctl(m, TIOCSWINSZ, &ws) != 0)
		die("TIOCSWINSZ");
	struct termios t;
	if (tcgetattr(m, &t) != 0)
		die("tcgetattr");
	t.c_lflag &= ~ECHO;
	t.c_cc[VINTR] = 7;
	if (tcsetattr(m, TCSANOW, &t) != 0)
		die("tcsetattr");
	fflush(stdout);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		exit(child_main(name, unread ? argv[1] : NULL, raw));
	struct timespec ms = { 0, 1000000 };
	for (;;) {
		int n = 0;
		if (ioctl(m, FIONREAD, &n) != 0)
			die("FIONREAD");
		if (n >= 10)
			break;
		nanosleep(&ms, NULL);
	}
	const char *pending = partial ? "pend" : "pending\nsecond\n";
	if (unread && write(m, pending, strlen(pending)) != (ssize_t)strlen(pending))
		die("write pending");
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	expect(m, NULL, "buffered\r\n");
	if (unread)
		expect(m, partial ? "ing\n" : NULL, "echo: pending\r\n");
	if (unread && !partial)
		expect(m, NULL, "echo: second\r\n");
	expect(m, "ping\n", "echo: ping\r\n");
	expect(m, "check\n", "child ok\r\n");
	if (ioctl(m, TIOCGWINSZ, &ws) != 0 || ws.ws_row != 33 || ws.ws_col != 101)
		fail("window size 33x101", "other");
	if (tcgetattr(m, &t) != 0 || (t.c_lflag & ECHO) || t.c_cc[VINTR] != 7)
		fail("termios ECHO off, VINTR ^G", "other");
	char now[64];
	if (ptsname_r(m, now, sizeof(now)) != 0)
		die("ptsname");
	printf("slave was %s, is %s\n", name, now);
	if (write(m, "quit\n", 5) != 5)
		die("write quit");
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("FAIL: child status %#x\n", st);
		return 1;
	}
	printf("OK\n");
	return 0;
}
