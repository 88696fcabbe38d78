// fifofile: holds a named pipe (FIFO) or a deleted file open for the
// checkpoint/restore tests of internal/files, waits for a trigger and then
// checks them.
//
// Protocol: fifofile TRIGGER fifo|deleted|delfork|delfifo|bigdeleted|dellinked
// In its working directory the program sets up, for "fifo":
//   3     "fifo" (mkfifo), O_RDONLY|O_NONBLOCK;
//   4     the same FIFO, O_WRONLY (blocking), "hello" written to it;
// for "deleted":
//   3     "data", O_RDWR, mode 0640, "0123456789" written and "Z" at
//         1 MiB (a hole between), then unlinked, offset 4;
//   4     the same file opened again O_RDONLY before the unlink, offset 0;
// for "delfork": as for "deleted", then a child is forked holding both;
// for "delfifo":
//   3     "fifo" (mkfifo), O_RDWR, then unlinked;
// for "bigdeleted":
//   3     "big", O_RDWR, 16 MiB + 1 byte of data written, then unlinked;
// for "dellinked":
//   3     "data", O_RDWR, linked as "data2", then "data" unlinked.
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists. Then it checks, printing "OK\n" and exiting 0 when all
// hold, "FAIL: reason\n" and exiting 1 otherwise:
//   fifo: fd 3 is a FIFO with O_NONBLOCK, fd 4 is without; fd 3 reads
//     exactly "hello", then fails EAGAIN; "x" written to fd 4 reads back
//     from fd 3; "fifo" in the directory is the inode fd 3 has open.
//   deleted: /proc/self/fd/3 ends in " (deleted)"; fd 3 reads "456789"
//     from its offset; "ab" written at offset 0 on fd 3 is read by fd 4
//     (the same inode), which reads "ab23456789"; nothing is named "data";
//     fd 3 has mode 0640, no link, size 1 MiB + 1 with "Z" at 1 MiB and
//     zeros in the hole; fd 4 is read-only.
//   delfork: the child writes "C" at offset 2 on its fd 3 and exits; the
//     parent waits for it, then checks as for "deleted", fd 4 reading
//     "abC3456789" (the child's file is the parent's).
//   delfifo: "x" written to fd 3 reads back from it.
//   bigdeleted: fd 3 still has its size.
//   dellinked: fd 3 has one link.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "fifofile: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void setup_fifo(void)
{
	if (mkfifo("fifo", 0600) < 0)
		die("mkfifo");
	if (open("fifo", O_RDONLY | O_NONBLOCK) != 3)
		die("open fifo 3");
	if (open("fifo", O_WRONLY) != 4)
		die("open fifo 4");
	if (write(4, "hello", 5) != 5)
		die("write fifo");
}

static void check_fifo(void)
{
	char buf[64];
	struct stat a, b;
	if (fstat(3, &a) < 0 || !S_ISFIFO(a.st_mode))
		fail("fd 3 is not a FIFO");
	if (stat("fifo", &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		fail("fifo names another inode than fd 3");
	if (!(fcntl(3, F_GETFL) & O_NONBLOCK))
		fail("fd 3 lost O_NONBLOCK");
	if (fcntl(4, F_GETFL) & O_NONBLOCK)
		fail("fd 4 has O_NONBLOCK");
	ssize_t n = read(3, buf, sizeof buf);
	if (n != 5 || memcmp(buf, "hello", 5) != 0)
		fail("fd 3 did not read hello");
	if (read(3, buf, sizeof buf) != -1 || errno != EAGAIN)
		fail("fd 3 read more than hello");
	if (write(4, "x", 1) != 1)
		fail("write to fd 4");
	if (read(3, buf, sizeof buf) != 1 || buf[0] != 'x')
		fail("fd 3 did not read what fd 4 wrote");
}

static void setup_deleted(void)
{
	if (open("data", O_RDWR | O_CREAT | O_EXCL, 0640) != 3)
		die("open data 3");
	if (open("data", O_RDONLY) != 4)
		die("open data 4");
	if (write(3, "0123456789", 10) != 10)
		die("write data");
	if (pwrite(3, "Z", 1, 1 << 20) != 1)
		die("write data at 1 MiB");
	if (lseek(3, 4, SEEK_SET) != 4)
		die("lseek");
	if (unlink("data") < 0)
		die("unlink");
}

static void check_deleted(const char *want4)
{
	char buf[64], link[4096];
	ssize_t n = readlink("/proc/self/fd/3", link, sizeof link - 1);
	if (n < 0)
		fail("readlink fd 3");
	link[n] = 0;
	if (n < 10 || strcmp(link + n - 10, " (deleted)") != 0)
		fail("fd 3 is not a deleted file");
	if (access("data", F_OK) == 0)
		fail("data exists");
	if (read(3, buf, 7) != 7 || memcmp(buf, "456789", 7) != 0)
		fail("fd 3 did not read 456789 from offset 4");
	if (pwrite(3, "ab", 2, 0) != 2)
		fail("pwrite fd 3");
	if (read(4, buf, 11) != 11 || memcmp(buf, want4, 11) != 0)
		fail("fd 4 did not read what fd 3 (and the child) wrote: not the same file");
	if (fcntl(4, F_GETFL) & O_ACCMODE)
		fail("fd 4 is not read-only");
	struct stat st;
	if (fstat(3, &st) < 0 || (st.st_mode & 07777) != 0640 || st.st_nlink != 0 || st.st_size != (1 << 20) + 1)
		fail("fd 3 mode, links or size");
	if (pread(3, buf, 1, 1 << 20) != 1 || buf[0] != 'Z')
		fail("fd 3 lost the Z at 1 MiB");
	if (pread(3, buf, 1, 5000) != 1 || buf[0] != 0)
		fail("fd 3 hole is not zeros");
}

static void setup_bigdeleted(void)
{
	static char chunk[1 << 20];
	memset(chunk, 'b', sizeof chunk);
	if (open("big", O_RDWR | O_CREAT | O_EXCL, 0600) != 3)
		die("open big 3");
	for (int i = 0; i < 16; i++)
		if (write(3, chunk, sizeof chunk) != sizeof chunk)
			die("write big");
	if (write(3, "b", 1) != 1 || unlink("big") < 0)
		die("write or unlink big");
}

static void setup_dellinked(void)
{
	if (open("data", O_RDWR | O_CREAT | O_EXCL, 0600) != 3)
		die("open data 3");
	if (link("data", "data2") < 0 || unlink("data") < 0)
		die("link or unlink data");
}

static void check_dellinked(void)
{
	struct stat st;
	if (fstat(3, &st) < 0 || st.st_nlink != 1)
		fail("fd 3 lost its link");
}

static void check_bigdeleted(void)
{
	struct stat st;
	if (fstat(3, &st) < 0 || st.st_size != (16 << 20) + 1)
		fail("fd 3 lost its size");
}

static void setup_delfifo(void)
{
	if (mkfifo("fifo", 0600) < 0)
		die("mkfifo");
	if (open("fifo", O_RDWR) != 3)
		die("open fifo 3");
	if (unlink("fifo") < 0)
		die("unlink");
}

static void check_delfifo(void)
{
	char c;
	if (write(3, "x", 1) != 1 || read(3, &c, 1) != 1 || c != 'x')
		fail("fd 3 does not pass bytes");
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: fifofile TRIGGER fifo|deleted|delfork|delfifo|bigdeleted|dellinked");
	int fifo = strcmp(argv[2], "fifo") == 0;
	int delfifo = strcmp(argv[2], "delfifo") == 0;
	int big = strcmp(argv[2], "bigdeleted") == 0;
	int delfork = strcmp(argv[2], "delfork") == 0;
	int linked = strcmp(argv[2], "dellinked") == 0;
	pid_t child = -1;
	if (fifo)
		setup_fifo();
	else if (delfifo)
		setup_delfifo();
	else if (big)
		setup_bigdeleted();
	else if (linked)
		setup_dellinked();
	else
		setup_deleted();
	if (delfork) {
		child = fork();
		if (child < 0)
			die("fork");
	}
	if (child != 0)
		printf("ready\n");
	fflush(stdout);
	struct timespec ms = {0, 1000000};
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (child == 0) {
		if (pwrite(3, "C", 1, 2) != 1)
			_exit(1);
		_exit(0);
	}
	if (delfork) {
		int status;
		if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail("the child failed");
	}
	if (fifo)
		check_fifo();
	else if (delfifo)
		check_delfifo();
	else if (big)
		check_bigdeleted();
	else if (linked)
		check_dellinked();
	else if (delfork)
		check_deleted("abC3456789");
	else
		check_deleted("ab23456789");
	printf("OK\n");
	fflush(stdout);
	return 0;
}
