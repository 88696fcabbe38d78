// mapfile: file-backed and anonymous mappings plus plain file descriptors.
//
// Exercises: MAP_PRIVATE file mapping with dirtied pages, MAP_SHARED
// read-only file mapping, a second fd on the same file with a file offset,
// MAP_SHARED and MAP_PRIVATE anonymous regions, character devices
// (/dev/null, /dev/zero) at fixed, non-contiguous fd numbers.
//
// Protocol: mapfile <datafile> [trigger]   (default trigger: "trigger")
// The test creates <datafile>: 64 KiB, byte i == (i*7) & 0xff.
// The program sets everything up, writes
//     "fds rw=<fd> ro=<fd> null=<fd> zero=<fd>\n"
//     "ready\n"
// to stdout, then polls every 1 ms until the trigger file exists. Then it
// verifies every item and writes "OK\n" and exits 0, or writes
// "FAIL <what>\n" and exits 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define FILE_SIZE (64 * 1024)
#define PAGE 4096
#define RO_OFFSET 12345
#define NULL_FD 20
#define ZERO_FD 23
#define SHANON_PAGES 3
#define PRANON_PAGES 5

static void say(const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = write(1, s, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		s += n;
		len -= (size_t)n;
	}
}

static void fail(const char *what)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "FAIL %s (errno %d)\n", what, errno);
	say(buf);
	exit(1);
}

static void wait_trigger(const char *path)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
	while (access(path, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static unsigned char pat(size_t i)
{
	return (unsigned char)((i * 7) & 0xff);
}

// open_at opens path and moves the fd to exactly fd.
static void open_at(const char *path, int flags, int fd)
{
	int tmp = open(path, flags);
	if (tmp < 0)
		fail(path);
	if (dup2(tmp, fd) != fd)
		fail("dup2");
	close(tmp);
}

int main(int argc, char **argv)
{
	const char *trigger = argc > 2 ? argv[2] : "trigger";
	unsigned char *priv, *shared, *shanon, *pranon;
	unsigned char b;
	char buf[256];
	int rw, ro;

	if (argc < 2) {
		say("FAIL usage: mapfile <datafile> [trigger]\n");
		return 2;
	}
	rw = open(argv[1], O_RDWR);
	if (rw < 0)
		fail("open datafile O_RDWR");
	ro = open(argv[1], O_RDONLY);
	if (ro < 0)
		fail("open datafile O_RDONLY");
	if (lseek(ro, RO_OFFSET, SEEK_SET) != RO_OFFSET)
		fail("lseek");

	priv = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, rw, 0);
	if (priv == MAP_FAILED)
		fail("mmap private");
	shared = mmap(NULL, FILE_SIZE, PROT_READ, MAP_SHARED, rw, 0);
	if (shared == MAP_FAILED)
		fail("mmap shared");
	for (size_t i = 0; i < FILE_SIZE; i++)
		if (priv[i] != pat(i) || shared[i] != pat(i))
			fail("datafile content before checkpoint");
	// Dirty a few pages of the private mapping (copy-on-write), leave the
	// others clean.
	priv[1 * PAGE] = 0xAA;
	priv[4 * PAGE + 100] = 0xBB;
	priv[15 * PAGE + PAGE - 1] = 0xCC;

	shanon = mmap(NULL, SHANON_PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shanon == MAP_FAILED)
		fail("mmap shared anon");
	memset(shanon, 0x5A, SHANON_PAGES * PAGE);
	pranon = mmap(NULL, PRANON_PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pranon == MAP_FAILED)
		fail("mmap private anon");
	memset(pranon, 0x3C, PRANON_PAGES * PAGE);

	open_at("/dev/null", O_WRONLY, NULL_FD);
	open_at("/dev/zero", O_RDONLY, ZERO_FD);

	snprintf(buf, sizeof(buf), "fds rw=%d ro=%d null=%d zero=%d\n", rw, ro, NULL_FD, ZERO_FD);
	say(buf);
	say("ready\n");
	wait_trigger(trigger);

	for (size_t i = 0; i < FILE_SIZE; i++) {
		unsigned char want = pat(i);
		if (i == 1 * PAGE)
			want = 0xAA;
		else if (i == 4 * PAGE + 100)
			want = 0xBB;
		else if (i == 15 * PAGE + PAGE - 1)
			want = 0xCC;
		if (priv[i] != want) {
			snprintf(buf, sizeof(buf), "private mapping at offset %zu: %#x != %#x", i, priv[i], want);
			fail(buf);
		}
		if (shared[i] != pat(i)) {
			snprintf(buf, sizeof(buf), "shared mapping at offset %zu: %#x != %#x", i, shared[i], pat(i));
			fail(buf);
		}
	}
	for (size_t i = 0; i < SHANON_PAGES * PAGE; i++)
		if (shanon[i] != 0x5A)
			fail("shared anon region");
	for (size_t i = 0; i < PRANON_PAGES * PAGE; i++)
		if (pranon[i] != 0x3C)
			fail("private anon region");

	if (lseek(ro, 0, SEEK_CUR) != RO_OFFSET)
		fail("ro fd offset");
	if (read(ro, &b, 1) != 1 || b != pat(RO_OFFSET))
		fail("ro fd read");
	if ((fcntl(ro, F_GETFL) & O_ACCMODE) != O_RDONLY)
		fail("ro fd access mode");
	if ((fcntl(rw, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("rw fd access mode");
	if (lseek(rw, 0, SEEK_CUR) != 0)
		fail("rw fd offset");
	if (pread(rw, &b, 1, 777) != 1 || b != pat(777))
		fail("rw fd pread");

	if (write(NULL_FD, "hello", 5) != 5)
		fail("write /dev/null");
	if ((fcntl(NULL_FD, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("/dev/null access mode");
	memset(buf, 0x77, sizeof(buf));
	if (read(ZERO_FD, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("read /dev/zero");
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != 0)
			fail("/dev/zero gave non-zero bytes");

	say("OK\n");
	return 0;
}
