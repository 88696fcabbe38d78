// unixnamed: holds named AF_UNIX sockets (path and abstract), listeners
// and connections made with connect/accept, for the checkpoint/restore
// tests; waits for a trigger and then checks them from inside.
//
// Protocol: unixnamed TRIGGER named [OUTSIDE] | pending | pendingdata | sender | unlinked |
// bound PATH
// It sets up, for "named" (L is "\0rtcr-l-PID", C "\0rtcr-c-PID"):
//   3   SOCK_STREAM listener bound to "lsock" (relative to the working
//       directory), backlog 3, SO_PASSCRED, its file chmod 0640;
//   4,5 a client connected to 3 and the connection 3 accepted: "c2s"
//       written on 4, "s2c!" on 5, unread; 4 then goes to a forked child
//       (the parent closes it, the child keeps only 4);
//   6   SOCK_SEQPACKET listener bound to the abstract name L;
//   7,8 a client bound to C connected to 6, the connection 6 accepted:
//       messages "m1" and "mm2" sent on 7, unread;
//   9   SOCK_DGRAM bound to the absolute path CWD/dsock, two datagrams
//       "d1" and "dd2" queued to it from an unnamed socket since closed;
//   10  SOCK_DGRAM, unnamed, connected to 9, SO_PASSSEC and SO_PASSPIDFD;
//   11  (with OUTSIDE) SOCK_DGRAM connected to the socket bound at OUTSIDE
//       by the test (outside the tree);
//   12,13 a client connected to a SOCK_STREAM listener bound to "tsock"
//       and the connection accepted, after which the listener is closed:
//       "t" written on 12, unread;
//   14  SOCK_DGRAM connected to 15, bound to the abstract name W
//       ("\0rtcr-w-PID"), which only the child keeps (with SO_RCVTIMEO 10 s).
// for "pending": 4 a SOCK_STREAM listener bound to "psock", backlog 5,
// with two connections waiting to be accepted: from 3 (unnamed), then
// from 5, bound to the abstract name P ("\0rtcr-p-PID"); before them 6
// connected to it and 4 accepted the connection as 7 (zdtm sockets00);
// for "pendingdata": 3 a listener bound to "qsock", 4 connected to it and
// "x" written on 4, not accepted;
// for "sender": 3 SOCK_DGRAM bound to "ssock" with a datagram "x" from 4,
// bound to the abstract name "\0rtcr-s-PID", unread;
// for "unlinked": 3 SOCK_DGRAM bound to "usock", which is then unlinked;
// for "bound": 3 SOCK_DGRAM bound to PATH, its file chmod 0600;
// for "unconn": 3 SOCK_STREAM bound to the abstract name U
// ("\0rtcr-u-PID"), 4 SOCK_SEQPACKET bound to "qpsock", 5 SOCK_STREAM
// neither bound nor connected; none listening (zdtm sk-unix-unconn);
// 6 SOCK_DGRAM bound to "selfsock" and connected to it (zdtm
// sockets_dgram).
// It writes "ready\n" to stdout and polls every 1 ms until the file
// TRIGGER exists (the child too). Then it checks, printing "OK\n" and
// exiting 0 when all hold, "FAIL: reason\n" and exiting 1 otherwise:
//   named: every socket has its name (getsockname) and peer's name
//     (getpeername), its type and listening state; "lsock" is a socket of
//     mode 0640; 5 reads exactly "c2s"; the child reads exactly "s2c!" on
//     4, sends "back", which 5 reads, and exits 0; 8 receives "m1" then
//     "mm2"; 9 receives "d1" then "dd2", then "after" sent on 10; 10 has
//     SO_PASSSEC and SO_PASSPIDFD; "out" is sent on 11; 13 reads "t";
//     3 takes exactly 4 (backlog + 1) non-blocking connections before
//     refusing with EAGAIN, accepts one and reads "new" written on it; 6
//     accepts a new connection to L; 14's peer is W and "w" sent on it is
//     received by the child on 15.
//   pending: 7 is named "psock", and 6 and 7 are connected to each other
//     (a byte written on each reaches the other); 4 is "psock", listening; 3 and 5 have "psock" as peer, 5 is
//     named P; 4 accepts the connection of 3 first, then that of 5 (the
//     peers' names tell, and a byte written on each reaches its client),
//     then has none. pendingdata: 3 accepts the connection and reads "x".
//   sender: 3 receives "x". unlinked: 3 is still named "usock".
//   bound: 3 is named PATH, whose file is a socket of mode 0600 owned by
//     the process's uid, and receives "self" sent to PATH.
//   unconn: 3 is named U, 4 "qpsock", neither listens, 5 is unnamed and
//     has no peer; then 3 and 4 listen and accept a connection (from 5
//     for 3) on which "u" is written; 6's peer is "selfsock", and "me"
//     sent on 6 comes back on 6.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

static void die(const char *what)
{
	fprintf(stderr, "unixnamed: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *why)
{
	printf("FAIL: %s (errno %s)\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

// at moves fd to number want (which must be free or unneeded).
static int at(int fd, int want)
{
	if (fd == want)
		return fd;
	if (dup2(fd, want) < 0)
		die("dup2");
	close(fd);
	return want;
}

// addr fills sa with name (len bytes; a leading NUL: abstract).
static socklen_t addr(struct sockaddr_un *sa, const char *name, size_t len)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, name, len);
	return offsetof(struct sockaddr_un, sun_path) + len + (name[0] != 0);
}

static int sock(int type)
{
	int s = socket(AF_UNIX, type, 0);
	if (s < 0)
		die("socket");
	return s;
}

static void bind_to(int s, const char *name, size_t len)
{
	struct sockaddr_un sa;
	socklen_t l = addr(&sa, name, len);
	if (bind(s, (struct sockaddr *)&sa, l) < 0)
		die("bind");
}

static int connect_to(int s, const char *name, size_t len)
{
	struct sockaddr_un sa;
	socklen_t l = addr(&sa, name, len);
	return connect(s, (struct sockaddr *)&sa, l);
}

// name_is checks fd's own (peer 0) or peer's name is name (len bytes,
// len 0: unnamed).
static void name_is(int fd, int peer, const char *name, size_t len, const char *why)
{
	struct sockaddr_un sa;
	socklen_t l = sizeof sa;
	memset(&sa, 0, sizeof sa);
	int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &l) : getsockname(fd, (struct sockaddr *)&sa, &l);
	if (r < 0)
		fail(why);
	size_t got = l - offsetof(struct sockaddr_un, sun_path);
	if (len > 0 && name[0] != 0 && got > 0 && sa.sun_path[got - 1] == 0)
		got--; // a path's NUL
	if (got != len || memcmp(sa.sun_path, name, len) != 0)
		fail(why);
}

static void wait_trigger(const char *trigger)
{
	struct timespec ms = {0, 1000000};
	while (access(trigger, F_OK) != 0)
		nanosleep(&ms, NULL);
}

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) < 0)
		return -1;
	return v;
}

// expect receives one message (stream: as many bytes as want has) on fd
// without waiting and checks it is want.
static void expect(int fd, const char *want, const char *why)
{
	char buf[64];
	size_t max = sizeof buf;
	if (sockopt(fd, SO_TYPE) == SOCK_STREAM)
		max = strlen(want); // the child may write more on 5 by now
	ssize_t n = recv(fd, buf, max, MSG_DONTWAIT);
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n) != 0)
		fail(why);
}

static void expect_empty(int fd, const char *why)
{
	char c;
	if (recv(fd, &c, 1, MSG_DONTWAIT) != -1 || errno != EAGAIN)
		fail(why);
}

static void setopt(int fd, int opt)
{
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, opt, &one, sizeof one) < 0)
		die("setsockopt");
}

int main(int argc, char **argv)
{
	if (argc < 3)
		die("usage: unixnamed TRIGGER named [OUTSIDE]|pending|sender");
	const char *mode = argv[2];
	char L[32], C[32], S[32], W[32], P[32], dsock[4200], cwd[4096];
	int Ll = 1 + snprintf(L + 1, sizeof L - 1, "rtcr-l-%d", getpid());
	int Cl = 1 + snprintf(C + 1, sizeof C - 1, "rtcr-c-%d", getpid());
	int Sl = 1 + snprintf(S + 1, sizeof S - 1, "rtcr-s-%d", getpid());
	int Wl = 1 + snprintf(W + 1, sizeof W - 1, "rtcr-w-%d", getpid());
	int Pl = 1 + snprintf(P + 1, sizeof P - 1, "rtcr-p-%d", getpid());
	char U[32];
	int Ul = 1 + snprintf(U + 1, sizeof U - 1, "rtcr-u-%d", getpid());
	L[0] = C[0] = S[0] = W[0] = P[0] = U[0] = 0;
	if (getcwd(cwd, sizeof cwd) == NULL)
		die("getcwd");
	snprintf(dsock, sizeof dsock, "%s/dsock", cwd);
	pid_t child = -1;
	if (strcmp(mode, "named") == 0) {
		int l = at(sock(SOCK_STREAM), 3);
		bind_to(l, "lsock", 5);
		if (listen(l, 3) < 0 || chmod("lsock", 0640) < 0)
			die("listen lsock");
		int c = at(sock(SOCK_STREAM), 4);
		if (connect_to(c, "lsock", 5) < 0)
			die("connect lsock");
		at(accept(3, NULL, NULL), 5);
		if (write(4, "c2s", 3) != 3 || write(5, "s2c!", 4) != 4)
			die("write 4/5");
		// After the accept, which copies it (a queue with credentials
		// is refused).
		setopt(3, SO_PASSCRED);
		int sl = at(sock(SOCK_SEQPACKET), 6);
		bind_to(sl, L, Ll);
		if (listen(sl, 5) < 0)
			die("listen L");
		int sc = at(sock(SOCK_SEQPACKET), 7);
		bind_to(sc, C, Cl);
		if (connect_to(sc, L, Ll) < 0)
			die("connect L");
		at(accept(6, NULL, NULL), 8);
		if (send(7, "m1", 2, 0) != 2 || send(7, "mm2", 3, 0) != 3)
			die("send 7");
		int d = at(sock(SOCK_DGRAM), 9);
		bind_to(d, dsock, strlen(dsock));
		int tmp = sock(SOCK_DGRAM);
		if (connect_to(tmp, dsock, strlen(dsock)) < 0 || send(tmp, "d1", 2, 0) != 2 || send(tmp, "dd2", 3, 0) != 3)
			die("send to dsock");
		close(tmp);
		int dc = at(sock(SOCK_DGRAM), 10);
		if (connect_to(dc, dsock, strlen(dsock)) < 0)
			die("connect dsock");
		setopt(10, SO_PASSSEC);
		setopt(10, SO_PASSPIDFD);
		if (argc > 3) {
			int o = at(sock(SOCK_DGRAM), 11);
			if (connect_to(o, argv[3], strlen(argv[3])) < 0)
				die("connect outside");
		}
		int tl = at(sock(SOCK_STREAM), 20);
		bind_to(tl, "tsock", 5);
		if (listen(tl, 1) < 0)
			die("listen tsock");
		int tc = at(sock(SOCK_STREAM), 12);
		if (connect_to(tc, "tsock", 5) < 0)
			die("connect tsock");
		at(accept(tl, NULL, NULL), 13);
		close(tl);
		if (write(12, "t", 1) != 1)
			die("write 12");
		int w = at(sock(SOCK_DGRAM), 15);
		bind_to(w, W, Wl);
		struct timeval tv = {10, 0};
		if (setsockopt(w, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
			die("SO_RCVTIMEO");
		if (connect_to(at(sock(SOCK_DGRAM), 14), W, Wl) < 0)
			die("connect W");
		child = fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			for (int fd = 5; fd <= 14; fd++)
				close(fd);
			close(3);
			wait_trigger(argv[1]);
			char buf[16];
			if (read(4, buf, sizeof buf) != 4 || memcmp(buf, "s2c!", 4) != 0)
				_exit(3);
			name_is(4, 1, "lsock", 5, "child: peer of 4");
			name_is(4, 0, "", 0, "child: 4 unnamed");
			if (write(4, "back", 4) != 4)
				_exit(4);
			if (recv(15, buf, sizeof buf, 0) != 1 || buf[0] != 'w')
				_exit(5);
			_exit(0);
		}
		close(4);
		close(15);
	} else if (strcmp(mode, "pending") == 0) {
		int c3 = at(sock(SOCK_STREAM), 3);
		int l = at(sock(SOCK_STREAM), 4);
		bind_to(l, "psock", 5);
		if (listen(l, 5) < 0)
			die("listen");
		int c5 = at(sock(SOCK_STREAM), 5);
		bind_to(c5, P, Pl);
		int c6 = at(sock(SOCK_STREAM), 6);
		if (connect_to(c6, "psock", 5) < 0)
			die("connect 6 to psock");
		at(accept(l, NULL, NULL), 7);
		if (connect_to(c3, "psock", 5) < 0 || connect_to(c5, "psock", 5) < 0)
			die("connect psock");
	} else if (strcmp(mode, "pendingdata") == 0) {
		int l = at(sock(SOCK_STREAM), 3);
		bind_to(l, "qsock", 5);
		if (listen(l, 5) < 0)
			die("listen");
		int c = at(sock(SOCK_STREAM), 4);
		if (connect_to(c, "qsock", 5) < 0 || write(c, "x", 1) != 1)
			die("connect qsock");
	} else if (strcmp(mode, "sender") == 0) {
		int d = at(sock(SOCK_DGRAM), 3);
		bind_to(d, "ssock", 5);
		int s = at(sock(SOCK_DGRAM), 4);
		bind_to(s, S, Sl);
		if (connect_to(s, "ssock", 5) < 0 || send(s, "x", 1, 0) != 1)
			die("send x");
	} else if (strcmp(mode, "unlinked") == 0) {
		bind_to(at(sock(SOCK_DGRAM), 3), "usock", 5);
		if (unlink("usock") < 0)
			die("unlink");
	} else if (strcmp(mode, "bound") == 0 && argc > 3) {
		bind_to(at(sock(SOCK_DGRAM), 3), argv[3], strlen(argv[3]));
		if (chmod(argv[3], 0600) < 0)
			die("chmod");
	} else if (strcmp(mode, "unconn") == 0) {
		bind_to(at(sock(SOCK_STREAM), 3), U, Ul);
		bind_to(at(sock(SOCK_SEQPACKET), 4), "qpsock", 6);
		at(sock(SOCK_STREAM), 5);
		int me = at(sock(SOCK_DGRAM), 6);
		bind_to(me, "selfsock", 8);
		if (connect_to(me, "selfsock", 8) < 0)
			die("connect selfsock");
	} else {
		die("unknown mode");
	}
	printf("ready\n");
	fflush(stdout);
	wait_trigger(argv[1]);
	if (strcmp(mode, "pending") == 0) {
		name_is(7, 0, "psock", 5, "name of 7");
		if (write(6, "p", 1) != 1 || write(7, "q", 1) != 1)
			fail("write on 6 and 7");
		expect(7, "p", "7 does not read p from 6");
		expect(6, "q", "6 does not read q from 7");
		name_is(4, 0, "psock", 5, "name of 4");
		if (sockopt(4, SO_ACCEPTCONN) != 1)
			fail("4 not listening");
		name_is(3, 1, "psock", 5, "peer of 3");
		name_is(5, 1, "psock", 5, "peer of 5");
		name_is(5, 0, P, Pl, "name of 5");
		int a1 = accept(4, NULL, NULL), a2 = accept(4, NULL, NULL);
		if (a1 < 0 || a2 < 0)
			fail("accept pending");
		name_is(a1, 1, "", 0, "first accepted is not from 3 (unnamed)");
		name_is(a2, 1, P, Pl, "second accepted is not from 5");
		if (write(a1, "1", 1) != 1 || write(a2, "2", 1) != 1)
			fail("write on accepted");
		expect(3, "1", "3 does not read 1");
		expect(5, "2", "5 does not read 2");
		if (fcntl(4, F_SETFL, fcntl(4, F_GETFL) | O_NONBLOCK) < 0)
			fail("O_NONBLOCK on 4");
		if (accept(4, NULL, NULL) >= 0 || errno != EAGAIN)
			fail("4 has a third connection");
	} else if (strcmp(mode, "pendingdata") == 0) {
		int a = accept(3, NULL, NULL);
		if (a < 0)
			fail("accept");
		expect(a, "x", "accepted does not read x");
	} else if (strcmp(mode, "sender") == 0) {
		expect(3, "x", "3 does not receive x");
	} else if (strcmp(mode, "unlinked") == 0) {
		name_is(3, 0, "usock", 5, "name of 3");
	} else if (strcmp(mode, "unconn") == 0) {
		name_is(3, 0, U, Ul, "name of 3");
		name_is(4, 0, "qpsock", 6, "name of 4");
		name_is(5, 0, "", 0, "name of 5");
		struct sockaddr_un a;
		socklen_t al = sizeof a;
		if (getpeername(5, (struct sockaddr *)&a, &al) == 0 || errno != ENOTCONN)
			fail("5 has a peer");
		if (sockopt(3, SO_ACCEPTCONN) != 0 || sockopt(4, SO_ACCEPTCONN) != 0)
			fail("3 or 4 listening");
		if (sockopt(3, SO_TYPE) != SOCK_STREAM || sockopt(4, SO_TYPE) != SOCK_SEQPACKET || sockopt(5, SO_TYPE) != SOCK_STREAM)
			fail("socket types");
		if (listen(3, 1) < 0 || listen(4, 1) < 0)
			fail("listen");
		int q = sock(SOCK_SEQPACKET);
		if (connect_to(5, U, Ul) < 0 || connect_to(q, "qpsock", 6) < 0)
			fail("connect");
		int a3 = accept(3, NULL, NULL), a4 = accept(4, NULL, NULL);
		if (a3 < 0 || a4 < 0 || write(a3, "u", 1) != 1 || write(a4, "u", 1) != 1)
			fail("accept and write");
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
		expect(5, "u", "5 does not read u");
		expect(q, "u", "the client of 4 does not read u");
		name_is(6, 1, "selfsock", 8, "peer of 6");
		if (send(6, "me", 2, 0) != 2)
			fail("send on 6");
		expect(6, "me", "6 does not receive me");
	} else if (strcmp(mode, "bound") == 0) {
		name_is(3, 0, argv[3], strlen(argv[3]), "name of 3");
		struct stat st;
		if (lstat(argv[3], &st) < 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0600 || st.st_uid != getuid())
			fail("socket file not a socket of mode 0600 owned by the process");
		int t = sock(SOCK_DGRAM);
		if (connect_to(t, argv[3], strlen(argv[3])) < 0 || send(t, "self", 4, 0) != 4)
			fail("send to PATH");
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
		expect(3, "self", "3 does not receive self");
	} else {
		name_is(3, 0, "lsock", 5, "name of 3");
		if (sockopt(3, SO_ACCEPTCONN) != 1 || sockopt(3, SO_PASSCRED) != 1 || sockopt(3, SO_TYPE) != SOCK_STREAM)
			fail("3 listening stream with SO_PASSCRED");
		struct stat st;
		if (lstat("lsock", &st) < 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0640)
			fail("lsock not a socket of mode 0640");
		name_is(5, 0, "lsock", 5, "name of 5");
		name_is(5, 1, "", 0, "peer of 5 unnamed");
		expect(5, "c2s", "5 does not read c2s");
		name_is(6, 0, L, Ll, "name of 6");
		if (sockopt(6, SO_ACCEPTCONN) != 1 || sockopt(6, SO_TYPE) != SOCK_SEQPACKET)
			fail("6 listening seqpacket");
		name_is(7, 0, C, Cl, "name of 7");
		name_is(7, 1, L, Ll, "peer of 7");
		name_is(8, 0, L, Ll, "name of 8");
		name_is(8, 1, C, Cl, "peer of 8");
		expect(8, "m1", "8 first message is not m1");
		expect(8, "mm2", "8 second message is not mm2");
		expect_empty(8, "8 has more");
		name_is(9, 0, dsock, strlen(dsock), "name of 9");
		name_is(10, 1, dsock, strlen(dsock), "peer of 10");
		name_is(10, 0, "", 0, "10 unnamed");
		if (sockopt(10, SO_PASSSEC) != 1 || sockopt(10, SO_PASSPIDFD) != 1 || sockopt(9, SO_PASSSEC) != 0)
			fail("SO_PASSSEC/SO_PASSPIDFD");
		expect(9, "d1", "9 first datagram is not d1");
		expect(9, "dd2", "9 second datagram is not dd2");
		expect_empty(9, "9 has more");
		if (send(10, "after", 5, 0) != 5)
			fail("send after on 10");
		expect(9, "after", "9 does not receive after");
		if (argc > 3) {
			name_is(11, 1, argv[3], strlen(argv[3]), "peer of 11");
			if (send(11, "out", 3, 0) != 3)
				fail("send out on 11");
		}
		name_is(14, 1, W, Wl, "peer of 14");
		if (send(14, "w", 1, 0) != 1)
			fail("send w on 14");
		name_is(13, 0, "tsock", 5, "name of 13");
		name_is(12, 1, "tsock", 5, "peer of 12");
		expect(13, "t", "13 does not read t");
		expect_empty(13, "13 has more");
		int n = 0, cl[20];
		for (; n < 20; n++) {
			cl[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
			if (connect_to(cl[n], "lsock", 5) < 0)
				break;
		}
		if (n != 4 || errno != EAGAIN)
			fail("3 does not take backlog + 1 = 4 connections");
		if (write(cl[0], "new", 3) != 3)
			fail("write new");
		int a = accept(3, NULL, NULL);
		if (a < 0)
			fail("accept on 3");
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
		expect(a, "new", "accepted connection does not read new");
		int s6 = sock(SOCK_SEQPACKET);
		if (connect_to(s6, L, Ll) < 0 || accept(6, NULL, NULL) < 0)
			fail("6 does not accept");
		char buf[16];
		ssize_t r = read(5, buf, sizeof buf);
		if (r != 4 || memcmp(buf, "back", 4) != 0)
			fail("5 does not read back from the child");
		int st2;
		if (waitpid(child, &st2, 0) != child || !WIFEXITED(st2) || WEXITSTATUS(st2) != 0)
			fail("child");
	}
	printf("OK\n");
	fflush(stdout);
	return 0;
}
