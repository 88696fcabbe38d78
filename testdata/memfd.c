// memfd: holds memfds for the checkpoint/restore tests of internal/files,
// waits for a trigger and then checks they still hold the same state.
//
// Protocol: memfd TRIGGER [shared|reopened]
//   3  memfd "rtcr test", MFD_ALLOW_SEALING: "hello" at 0, a hole, "world"
//      at 1 MiB, size 2 MiB + 123, position 7, sealed F_SEAL_SHRINK |
//      F_SEAL_GROW;
//   4  memfd "second", MFD_CLOEXEC (no sealing: seals read F_SEAL_SEAL),
//      "0123456789", position 10, mode 0640;
//   5  memfd "ro" holding "ro data", reopened O_RDONLY through /proc;
//   10 with "shared": a dup of fd 3 (after the checks, a seek on fd 10
//      must move fd 3); with "reopened": fd 3 opened again through /proc
//      (a second open file on the same memfd: after the checks a write
//      through fd 3 must show through fd 10, whose position is its own).
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists. Then it checks names, contents, sizes, positions, seals,
// close-on-exec and mode, printing "OK\n" and exiting 0 when all hold,
// "FAIL: reason\n" and exiting 1 otherwise.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)

static void die(const char *what)
{
	fprintf(stderr, "memfd: %s: %s\n", what, strerror(errno));
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
		fprintf(stderr, "memfd: got fd %d, want %d\n", got, want);
		exit(2);
	}
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void expect_link(int fd, const char *want)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		die("readlink");
	buf[n] = 0;
	if (strcmp(buf, want) != 0) {
		printf("FAIL: fd %d is %s, want %s\n", fd, buf, want);
		exit(1);
	}
}

static void expect_data(int fd, off_t off, const char *want, size_t n)
{
	char buf[64] = { 0 };
	if (pread(fd, buf, n, off) != (ssize_t)n || memcmp(buf, want, n) != 0)
		fail("contents (fd, offset)", fd, (long)off);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: memfd TRIGGER [shared]\n");
		return 2;
	}
	expect_fd(memfd_create("rtcr test", MFD_ALLOW_SEALING), 3);
	if (pwrite(3, "hello", 5, 0) != 5 || pwrite(3, "world", 5, MIB) != 5)
		die("write fd 3");
	if (ftruncate(3, 2 * MIB + 123) != 0 || lseek(3, 7, SEEK_SET) != 7)
		die("size fd 3");
	if (fcntl(3, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
		die("seal fd 3");
	expect_fd(memfd_create("second", MFD_CLOEXEC), 4);
	if (write(4, "0123456789", 10) != 10 || fchmod(4, 0640) != 0)
		die("fd 4");
	expect_fd(memfd_create("ro", 0), 5);
	if (write(5, "ro data", 7) != 7)
		die("fd 5");
	expect_fd(open("/proc/self/fd/5", O_RDONLY), 6);
	if (dup2(6, 5) != 5 || close(6) != 0)
		die("reopen fd 5");
	if (argc == 3 && strcmp(argv[2], "shared") == 0 && dup2(3, 10) != 10)
		die("dup2");
	if (argc == 3 && strcmp(argv[2], "reopened") == 0) {
		int f = open("/proc/self/fd/3", O_RDWR);
		if (f < 0 || dup2(f, 10) != 10 || close(f) != 0)
			die("reopen fd 3");
	}

	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	while (access(argv[1], F_OK) != 0)
		sleep_ms(1);

	expect_link(3, "/memfd:rtcr test (deleted)");
	expect_link(4, "/memfd:second (deleted)");
	struct stat st;
	if (fstat(3, &st) != 0 || st.st_size != 2 * MIB + 123)
		fail("fd 3 size", (long)st.st_size, 2 * MIB + 123);
	expect_data(3, 0, "hello\0\0", 7);
	expect_data(3, MIB - 2, "\0\0world\0", 8);
	expect_data(3, 2 * MIB + 120, "\0\0\0", 3);
	if (lseek(3, 0, SEEK_CUR) != 7)
		fail("fd 3 position", (long)lseek(3, 0, SEEK_CUR), 7);
	if (fcntl(3, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW))
		fail("fd 3 seals", fcntl(3, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW);
	if (ftruncate(3, MIB) != -1 || errno != EPERM)
		fail("fd 3 shrank despite F_SEAL_SHRINK", errno, 0);
	if (pwrite(3, "HELLO", 5, 0) != 5)
		fail("fd 3 not writable", errno, 0);
	if ((fcntl(3, F_GETFD) & FD_CLOEXEC) || !(fcntl(4, F_GETFD) & FD_CLOEXEC))
		fail("close-on-exec of fds 3, 4", fcntl(3, F_GETFD), fcntl(4, F_GETFD));
	if ((fcntl(3, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("fd 3 access mode", fcntl(3, F_GETFL), O_RDWR);

	if (fstat(4, &st) != 0 || st.st_size != 10 || (st.st_mode & 07777) != 0640)
		fail("fd 4 size, mode", (long)st.st_size, st.st_mode & 07777);
	expect_data(4, 0, "0123456789", 10);
	if (lseek(4, 0, SEEK_CUR) != 10)
		fail("fd 4 position", (long)lseek(4, 0, SEEK_CUR), 10);
	if (fcntl(4, F_GET_SEALS) != F_SEAL_SEAL)
		fail("fd 4 seals", fcntl(4, F_GET_SEALS), F_SEAL_SEAL);

	expect_link(5, "/memfd:ro (deleted)");
	expect_data(5, 0, "ro data", 7);
	if ((fcntl(5, F_GETFL) & O_ACCMODE) != O_RDONLY || write(5, "x", 1) != -1)
		fail("fd 5 is not read-only", fcntl(5, F_GETFL), 0);
	if (argc == 3 && strcmp(argv[2], "shared") == 0 &&
	    (lseek(10, 3, SEEK_SET) != 3 || lseek(3, 0, SEEK_CUR) != 3))
		fail("fd 3 position after a seek on its dup 10", (long)lseek(3, 0, SEEK_CUR), 3);
	if (argc == 3 && strcmp(argv[2], "reopened") == 0) {
		struct stat st10;
		char got[4];
		if (fstat(3, &st) != 0 || fstat(10, &st10) != 0 || st.st_ino != st10.st_ino || st.st_dev != st10.st_dev)
			fail("fds 3 and 10 are not one memfd", (long)st.st_ino, (long)st10.st_ino);
		if (pwrite(3, "SAME", 4, 100) != 4 || pread(10, got, 4, 100) != 4 || memcmp(got, "SAME", 4) != 0)
			fail("a write through fd 3 does not show through fd 10", errno, 0);
		if (lseek(10, 50, SEEK_SET) != 50 || lseek(3, 0, SEEK_CUR) != 7)
			fail("fds 3 and 10 share a position", (long)lseek(3, 0, SEEK_CUR), 7);
	}
	printf("OK\n");
	return 0;
}
