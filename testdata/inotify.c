// inotify: holds an inotify instance for the checkpoint/restore tests of
// internal/files, waits for a trigger and then checks its watches.
//
// Protocol: inotify TRIGGER [queued]
// In its working directory it makes "dir", "dir/file" and "other", and
//   3  inotify_init1(IN_NONBLOCK): wd 1 on "other" (removed again, its
//      IN_IGNORED read), wd 2 on "dir" (IN_CREATE|IN_DELETE|IN_ONLYDIR),
//      wd 3 on "dir/file" (IN_MODIFY|IN_EXCL_UNLINK), so wd 1 is a gap;
//      with "queued": a write to "dir/file" leaves an event unread.
// It keeps the inotify lines of /proc/self/fdinfo/3, writes "ready\n" to
// stdout and polls every 1 ms until the file TRIGGER exists. Then it
// checks, printing "OK\n" and exiting 0 when all hold, "FAIL: reason\n"
// and exiting 1 otherwise:
//   - the inotify lines of fdinfo are the same (wds, masks, files);
//   - no event is queued; creating "dir/new" gives IN_CREATE "new" on wd 2,
//     writing "dir/file" IN_MODIFY on wd 3;
//   - a new watch on "other" gets wd 4.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "inotify: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why, long a, long b)
{
	printf("FAIL: %s (%ld, %ld)\n", why, a, b);
	exit(1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

// watches returns the inotify lines of /proc/self/fdinfo/3.
static void watches(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/fdinfo/3", "r");
	if (!f)
		die("fdinfo");
	char line[512];
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "inotify ", 8) == 0)
			strncat(out, line, size - strlen(out) - 1);
	fclose(f);
}

// event reads one event, failing unless it is mask on wd (with name).
static void event(int wd, unsigned mask, const char *name)
{
	char buf[sizeof(struct inotify_event) + 256] __attribute__((aligned(8)));
	ssize_t n = -1;
	for (int i = 0; i < 5000 && n < 0; i++) {
		n = read(3, buf, sizeof(buf));
		if (n < 0 && errno != EAGAIN)
			die("read event");
		if (n < 0)
			sleep_ms(1);
	}
	if (n < (ssize_t)sizeof(struct inotify_event))
		fail("no event within 5 s (wd)", wd, n);
	struct inotify_event *ev = (struct inotify_event *)buf;
	if (ev->wd != wd || ev->mask != mask)
		fail("event (wd, mask)", ev->wd, ev->mask);
	if (name && (ev->len == 0 || strcmp(ev->name, name) != 0))
		fail("event name of wd", wd, ev->len);
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: inotify TRIGGER [queued]\n");
		return 2;
	}
	if (mkdir("dir", 0755) != 0 || close(open("dir/file", O_WRONLY | O_CREAT, 0644)) != 0 ||
	    close(open("other", O_WRONLY | O_CREAT, 0644)) != 0)
		die("make files");
	if (inotify_init1(IN_NONBLOCK) != 3)
		die("inotify_init1 not at fd 3");
	if (inotify_add_watch(3, "other", IN_ATTRIB) != 1 || inotify_rm_watch(3, 1) != 0)
		die("watch 1");
	event(1, IN_IGNORED, NULL);
	if (inotify_add_watch(3, "dir", IN_CREATE | IN_DELETE | IN_ONLYDIR) != 2)
		die("watch 2");
	if (inotify_add_watch(3, "dir/file", IN_MODIFY | IN_EXCL_UNLINK) != 3)
		die("watch 3");
	char before[2048], after[2048];
	watches(before, sizeof(before));
	if (argc == 3) {
		int f = open("dir/file", O_WRONLY);
		if (f < 0 || write(f, "x", 1) != 1 || close(f) != 0)
			die("write dir/file");
	}

	if (write(1, "ready\n", 6) != 6)
		die("write ready");
	while (access(argv[1], F_OK) != 0)
		sleep_ms(1);

	watches(after, sizeof(after));
	if (strcmp(before, after) != 0) {
		printf("FAIL: watches differ:\n%s-- now:\n%s", before, after);
		return 1;
	}
	char c[64];
	if (argc == 2 && (read(3, c, sizeof(c)) != -1 || errno != EAGAIN))
		fail("an event is queued", errno, 0);
	if (argc == 3)
		event(3, IN_MODIFY, NULL);
	if (close(open("dir/new", O_WRONLY | O_CREAT, 0644)) != 0)
		die("create dir/new");
	event(2, IN_CREATE, "new");
	int f = open("dir/file", O_WRONLY);
	if (f < 0 || write(f, "y", 1) != 1 || close(f) != 0)
		die("write dir/file");
	event(3, IN_MODIFY, NULL);
	int wd = inotify_add_watch(3, "other", IN_ATTRIB);
	if (wd != 4)
		fail("next watch wd", wd, 4);
	printf("OK\n");
	return 0;
}
