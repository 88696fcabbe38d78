// fanotify: a fanotify group with marks, for the fanotify dump and
// restore tests.
//
// Protocol: fanotify TRIGGER DIR MODE
// DIR is a directory on a mount of its own that nothing else uses (the
// test mounts a tmpfs there). The program makes fd 3 a fanotify group
// (FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, events opened
// O_RDONLY | O_LARGEFILE), creates DIR/f, marks it (FAN_MODIFY |
// FAN_ACCESS | FAN_OPEN | FAN_CLOSE), marks DIR's mount (FAN_ONDIR |
// FAN_OPEN | FAN_CLOSE) and gives that mark an ignored mask (FAN_MODIFY |
// FAN_ACCESS, FAN_MARK_IGNORED_SURV_MODIFY), reads the group's fdinfo
// "fanotify" lines, writes "ready\n" and polls every 1 ms until TRIGGER
// exists.
// MODE:
//   - marks: after the trigger the fdinfo lines (sorted; mnt_id left out)
//     must be as before, and writing DIR/f must queue events with
//     FAN_CLOSE_WRITE among them and no FAN_MODIFY (the mount mark's
//     ignored mask); then "OK\n" and exit 0, else "FAIL: …" and exit 1.
//   - queued: the program opens DIR/f before "ready" (events queued at
//     the dump); after the trigger "OK\n" and exit 0.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	exit(1);
}

// marks reads the "fanotify" lines of fd 3's fdinfo, without mnt_id.
static void marks(char *out, size_t size)
{
	char line[1024];
	FILE *f = fopen("/proc/self/fdinfo/3", "r");
	if (!f)
		die("fdinfo");
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "fanotify ", 9) != 0)
			continue;
		char *m = strstr(line, "mnt_id:");
		if (m) {
			char *sp = strchr(m, ' ');
			memmove(m, sp + 1, strlen(sp + 1) + 1);
		}
		strncat(out, line, size - strlen(out) - 1);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 1000000};
	char path[4096], before[8192], after[8192];

	if (argc != 4)
		return 2;
	int queued = strcmp(argv[3], "queued") == 0;
	setvbuf(stdout, NULL, _IONBF, 0);
	int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE);
	if (fd != 3)
		die("fanotify_init as fd 3");
	snprintf(path, sizeof(path), "%s/f", argv[2]);
	int f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (f < 0)
		die("create f");
	close(f);
	if (fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY | FAN_ACCESS | FAN_OPEN | FAN_CLOSE, AT_FDCWD, path) < 0)
		die("inode mark");
	if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_ONDIR | FAN_OPEN | FAN_CLOSE, AT_FDCWD, argv[2]) < 0)
		die("mount mark");
	if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
			  FAN_MODIFY | FAN_ACCESS, AT_FDCWD, argv[2]) < 0)
		die("ignored mask");
	if (queued) {
		f = open(path, O_RDONLY | O_CLOEXEC);
		close(f);
	}
	marks(before, sizeof(before));
	printf("ready\n");
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ts, NULL);
	if (queued) {
		printf("OK\n");
		return 0;
	}
	marks(after, sizeof(after));
	if (strcmp(before, after) != 0) {
		printf("FAIL: marks were\n%s, are\n%s", before, after);
		return 1;
	}
	f = open(path, O_WRONLY | O_CLOEXEC);
	if (f < 0 || write(f, "x", 1) != 1)
		die("write f");
	close(f);
	char buf[8192];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n <= 0)
		die("no events");
	int modify = 0, closew = 0;
	for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
		if (m->mask & FAN_MODIFY)
			modify = 1;
		if (m->mask & FAN_CLOSE_WRITE)
			closew = 1;
		if (m->fd >= 0)
			close(m->fd);
	}
	if (!closew || modify) {
		printf("FAIL: FAN_CLOSE_WRITE %d (want 1), FAN_MODIFY %d (want 0: the mount's ignored mask)\n", closew, modify);
		return 1;
	}
	printf("OK\n");
	return 0;
}
