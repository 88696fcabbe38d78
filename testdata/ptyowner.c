// ptyowner: a pty pair whose slave the program gave another owner and
// mode, for the restore of a slave's owner.
//
// Protocol: ptyowner TRIGGER
// It opens a pty master (fd 3) and its slave (fd 4), gives the slave
// (/dev/pts/N) owner 13333:44444 and mode 0604, writes "ready\n" and
// polls every 1 ms until TRIGGER exists. Then it checks, through fd 4,
// that the slave still has that owner and mode, printing "OK\n" and
// exiting 0, or "FAIL: reason\n" and exiting 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

int main(int argc, char **argv)
{
	struct timespec ms = {0, 1000000};
	struct stat st;
	int m, s;

	if (argc != 2) {
		fprintf(stderr, "usage: ptyowner TRIGGER\n");
		return 2;
	}
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m != 3 || grantpt(m) < 0 || unlockpt(m) < 0)
		fail("open the master at fd 3");
	s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s != 4)
		fail("open the slave at fd 4");
	if (fchown(s, 13333, 44444) < 0 || fchmod(s, 0604) < 0)
		fail("fchown/fchmod the slave");
	printf("ready\n");
	fflush(stdout);
	while (access(argv[1], F_OK) != 0)
		nanosleep(&ms, NULL);
	if (fstat(4, &st) < 0)
		fail("fstat the slave");
	if (st.st_uid != 13333 || st.st_gid != 44444 || (st.st_mode & 07777) != 0604) {
		printf("FAIL: slave is %d:%d mode %#o, want 13333:44444 mode 0604\n", (int)st.st_uid, (int)st.st_gid, st.st_mode & 07777);
		return 1;
	}
	printf("OK\n");
	return 0;
}
