// unsupported: holds an fd of a kind rtcr does not support (yet) and counts.
//
// Exercises: a dump that must fail cleanly (a netlink socket is open)
// and leave the target running undisturbed.
//
// Protocol: unsupported
// Creates a netlink socket (AF_NETLINK, NETLINK_ROUTE; unix socket pairs
// held in the tree and TCP/UDP sockets are supported now), writes
// "ready\n" to stdout, then behaves like counter with a 10 ms interval:
// writes "%d\n" of n = 0, 1, 2, ... forever. Tests check that after the
// failed dump the numbers keep increasing by one with no gap.
// On setup failure it writes "FAIL <what>\n" and exits 1.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void say(const char *s)
{
	write_all(1, s, strlen(s));
}

int main(void)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 10 * 1000000L };
	char buf[32];

	if (socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) < 0) {
		say("FAIL socket\n");
		return 1;
	}
	say("ready\n");
	for (long n = 0;; n++) {
		int len = snprintf(buf, sizeof(buf), "%ld\n", n);
		write_all(1, buf, (size_t)len);
		nanosleep(&ts, NULL);
	}
}
