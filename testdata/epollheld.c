// epollheld: an epoll whose watched fds were closed or reused while the
// files stay open elsewhere, for the checkpoint/restore test of epoll.
//
// Protocol: epollheld TRIGGER
// The program sets up, in its working directory:
//   pipe A (read end 3, write end 4), epoll 5; the read end is added with
//     EPOLLIN and data 0xa1, dup'd to 6, and fd 3 closed (the watch is
//     kept by fd 6);
//   pipe B, read end at fd 3 again, write end 7; added as fd 3 with data
//     0xb2 (the epoll now has two watches under fd number 3);
//   pipe C (read end 8, write end 9); added with data 0xc3; a child is
//     forked that keeps fd 8 (and closes 5, 6, 7 and 9), then the parent
//     closes fd 8: only the child holds that file.
// It writes "ready\n" to stdout and polls every 1 ms until TRIGGER
// exists. Then the parent writes a byte to 4, 7 and 9 in turn; after each
// epoll_wait on 5 must report exactly one event, EPOLLIN with that pipe's
// data (then the byte is read from 6 or 3; the child reads its own). It
// creates "done", which the child waits for, waits for the child, prints
// "OK\n" and exits 0, or prints "FAIL: reason\n" and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "epollheld: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void expect_fd(int got, int want)
{
	if (got != want) {
		fprintf(stderr, "epollheld: got fd %d, want %d\n", got, want);
		exit(2);
	}
}

static void wait_for(const char *path)
{
	struct timespec ms = { 0, 1000000 };
	while (access(path, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static void add(int fd, unsigned long long data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };
	if (epoll_ctl(5, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl");
}

// check writes a byte to w and requires one event with data on epoll 5,
// then reads the byte from r (-1: another process holds the read end and
// the event stays: the check comes last).
static void check(int w, int r, unsigned long long data)
{
	if (write(w, "x", 1) != 1)
		die("write");
	struct epoll_event ev[4];
	int n = epoll_wait(5, ev, 4, 5000);
	if (n != 1 || ev[0].events != EPOLLIN || ev[0].data.u64 != data) {
		printf("FAIL: after a write to fd %d: %d events, first %#x data %#llx, want EPOLLIN data %#llx\n",
		       w, n, n > 0 ? ev[0].events : 0, n > 0 ? (unsigned long long)ev[0].data.u64 : 0ULL, data);
		exit(1);
	}
	char c;
	if (r >= 0 && read(r, &c, 1) != 1)
		die("read");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: epollheld TRIGGER\n");
		return 2;
	}
	int p[2];
	if (pipe(p) != 0)
		die("pipe");
	expect_fd(p[0], 3);
	expect_fd(epoll_create1(0), 5);
	add(3, 0xa1);
	expect_fd(dup(3), 6);
	close(3);
	if (pipe(p) != 0)
		die("pipe");
	expect_fd(p[0], 3);
	expect_fd(p[1], 7);
	add(3, 0xb2);
	if (pipe(p) != 0)
		die("pipe");
	expect_fd(p[0], 8);
	add(8, 0xc3);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(5);
		close(6);
		close(7);
		close(9);
		wait_for(argv[1]);
		wait_for("done");
		char c;
		if (read(8, &c, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(8);
	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	wait_for(argv[1]);
	check(4, 6, 0xa1);
	check(7, 3, 0xb2);
	check(9, -1, 0xc3);
	if (close(open("done", O_CREAT | O_WRONLY, 0644)) != 0)
		die("done");
	int st;
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("FAIL: child status %#x\n", st);
		return 1;
	}
	printf("OK\n");
	return 0;
}
