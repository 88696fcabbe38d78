// devtty: holds an fd on /dev/tty, for the /dev/tty fd tests.
//
// Protocol: devtty TRIGGER own|lost
// The program forks a child and waits for it, exiting with its status.
// The child starts a session, opens a pty pair (master fd 3; the slave,
// fd 4, becomes its controlling terminal) and /dev/tty as fd 10, writes
// "ready\n" and polls every 1 ms until the file TRIGGER exists; then it
// checks that fd 10 is /dev/tty (character device 5:0) reaching the slave
// (TIOCGDEV) and that "hi" written on it is read on the master, writes
// "OK\n" and exits 0 (or "FAIL: …" and exits 1).
// lost: after opening /dev/tty the child gives its controlling terminal up
// (TIOCNOTTY, SIGHUP ignored); after the trigger it only writes "OK\n".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void fail(const char *what)
{
	printf("FAIL: %s (errno %s)\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static int child(const char *trigger, int lost)
{
	struct timespec ms = {0, 1000000};
	struct stat st, slave;
	unsigned int dev;
	char buf[8];

	signal(SIGHUP, SIG_IGN);
	if (setsid() < 0)
		fail("setsid");
	if (posix_openpt(O_RDWR | O_NOCTTY) != 3 || grantpt(3) < 0 || unlockpt(3) < 0)
		fail("master as fd 3");
	if (open(ptsname(3), O_RDWR) != 4)
		fail("slave as fd 4");
	int t = open("/dev/tty", O_RDWR);
	if (t < 0 || dup2(t, 10) != 10 || close(t) < 0)
		fail("/dev/tty as fd 10");
	if (lost && ioctl(4, TIOCNOTTY) < 0)
		fail("TIOCNOTTY");
	printf("ready\n");
	fflush(stdout);
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
	if (!lost) {
		if (fstat(10, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 0))
			fail("fd 10 is not /dev/tty");
		if (ioctl(10, TIOCGDEV, &dev) < 0 || fstat(4, &slave) < 0)
			fail("TIOCGDEV");
		if (dev != slave.st_rdev)
			fail("fd 10 does not reach the slave");
		if (write(10, "hi", 2) != 2)
			fail("write on fd 10");
		for (int i = 0; i < 5000; i++) {
			fcntl(3, F_SETFL, O_NONBLOCK);
			ssize_t n = read(3, buf, sizeof buf);
			if (n == 2 && memcmp(buf, "hi", 2) == 0)
				break;
			if (n >= 0 || errno != EAGAIN)
				fail("read hi on the master");
			if (i == 4999)
				fail("hi never reached the master");
			nanosleep(&ms, NULL);
		}
	}
	printf("OK\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int st;
	pid_t pid;

	if (argc != 3) {
		fprintf(stderr, "usage: devtty TRIGGER own|lost\n");
		return 2;
	}
	pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0)
		return child(argv[1], strcmp(argv[2], "lost") == 0);
	if (waitpid(pid, &st, 0) != pid)
		fail("waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
