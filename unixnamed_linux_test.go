package rtcr_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// outsideSocket binds a datagram socket of the test (outside the dumped
// tree) in a directory of its own and returns it and its path.
func outsideSocket(t *testing.T) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outside")
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s) })
	if err := unix.Bind(s, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// TestUnixNamedRoundTrip checkpoints testdata/unixnamed.c holding a stream
// listener bound to a relative path (backlog 3, SO_PASSCRED, file mode
// 0640) with an accepted connection whose client a child holds, a
// seqpacket listener on an abstract name with an accepted connection
// from a client bound to another abstract name, a datagram socket bound
// to an absolute path with two datagrams queued and an unnamed datagram
// socket connected to it (SO_PASSSEC, SO_PASSPIDFD), a datagram socket
// connected to a socket of the test (outside the tree), and a connection
// whose listener was closed; kills the tree and restores it. The program
// then checks every name and peer name, the bytes and messages queued
// both ways, the options, the socket file's mode, that the listener takes
// exactly backlog + 1 new connections and accepts one, and the child
// talks to its parent; the test receives what the program sends to the
// outside socket, and a datagram socket connected to one only the child
// holds (made after it) sends to it. The restored tree is checkpointed and restored a
// second time before it checks (the socket files are then the ones the
// first restore made).
func TestUnixNamedRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	out, path := outsideSocket(t)
	tg := start(t, testutil.BuildC(t, "unixnamed", false), "trigger", "named", path)
	t.Cleanup(tg.fire) // the child exits too
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.restore(tg.dump(false))
	dir := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
		t.Fatalf("dump of the restored tree: %v; output:\n%s", err, tg.output())
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(tg.pid, &ws, 0, nil) // our child through CLONE_PARENT
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after two restores: exit %d, output:\n%s", code, tg.output())
	}
	tv := unix.Timeval{Sec: 10}
	if err := unix.SetsockoptTimeval(out, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _, err := unix.Recvfrom(out, buf, 0)
	if err != nil || string(buf[:n]) != "out" {
		t.Fatalf("outside socket received %q, %v; want \"out\"", buf[:n], err)
	}
}

// TestUnixNamedRefused: a listener with a connection not accepted yet on
// which the client wrote, a datagram queued from a named sender, and a
// socket whose file was unlinked after the bind, are refused naming the
// fd and the count, the sender or the name, and the process runs on with
// its sockets intact.
func TestUnixNamedRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "unixnamed", false)
	tests := []struct{ arg, fd, want, want2 string }{
		{"pendingdata", "fd 3 (", "listening unix socket with 1 connections waiting to be accepted: socket:[", "sent"},
		{"sender", "fd 3 (", `was sent by "@rtcr-s-`, "queued message 1"},
		{"unlinked", "fd 3 (", `unix socket bound to "usock":`, "is not its socket file (unlinked or replaced since"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dumpRefused(tc.fd, tc.want, tc.want2)
			tg.runsOnOK()
		})
	}
}

// TestUnixPendingRoundTrip checkpoints testdata/unixnamed.c holding a
// listener with two connections waiting to be accepted, from an unnamed
// client made before the listener (fd 3) and from one bound to an
// abstract name (fd 5): after the restore the listener accepts them in
// their order, each connected to its client. A connection the listener
// had accepted before (fds 6 and 7) is connected end to end: its restore
// accepts from the restored listener, which used to hand it the
// connection of fd 3 (the waiting ones were connected as soon as the
// listener existed), a pair restored silently wrong (zdtm sockets00 hung
// reading from it).
func TestUnixPendingRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "unixnamed", false), "trigger", "pending")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("connections waiting to be accepted")
}

// TestUnixUnconnectedRoundTrip checkpoints testdata/unixnamed.c holding
// stream and seqpacket sockets bound but not listening and a stream
// socket neither bound nor connected (zdtm sk-unix-unconn), and a
// datagram socket connected to its own name (zdtm sockets_dgram): after
// the restore they have their names, no peer (the last its own name), and
// listen and connect as new ones, the last receiving what it sends. The
// dump used to fail peeking at the (impossible) queue of the first, and
// to write an image it found inconsistent for the last (taken for a
// socket pair with itself).
func TestUnixUnconnectedRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "unixnamed", false), "trigger", "unconn")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("unconnected sockets")
}

// TestUnixStaleFileChecked: restore removes a stale socket file at a
// bound socket's path, but nothing else: a regular file or a symbolic
// link put there after the dump refuses the restore, naming the path,
// and is left as it was (the link's target too); so does a socket file
// another socket is bound to. After each refusal the original file put
// back, the same image restores.
func TestUnixStaleFileChecked(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "unixnamed", false)
	tg := start(t, bin, "trigger", "named")
	t.Cleanup(tg.fire) // the child exits too
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsock := filepath.Join(tg.dir, "dsock")
	lsock := filepath.Join(tg.dir, "lsock")
	tests := []struct {
		name, path string
		put        func(path string) func()
		want       string
	}{
		{"regular file", dsock, func(p string) func() {
			if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			return func() {
				if b, err := os.ReadFile(p); err != nil || string(b) != "data" {
					t.Errorf("%s: %q, %v after the refused restore", p, b, err)
				}
			}
		}, "dsock exists and is not a socket"},
		{"symlink", lsock, func(p string) func() {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return func() {
				if l, err := os.Readlink(p); err != nil || l != target {
					t.Errorf("%s: link %q, %v after the refused restore", p, l, err)
				}
			}
		}, "lsock exists and is not a socket"},
		{"socket in use", dsock, func(p string) func() {
			s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Bind(s, &unix.SockaddrUnix{Name: p}); err != nil {
				t.Fatal(err)
			}
			return func() {
				unix.Close(s)
				if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Errorf("%s: %v, %v after the refused restore", p, fi, err)
				}
			}
		}, "is in use by socket:["},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Remove(tc.path); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			after := tc.put(tc.path)
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v, want an error naming %q", err, tc.want)
			}
			after()
			if b, err := os.ReadFile(target); err != nil || string(b) != "keep" {
				t.Errorf("link target: %q, %v", b, err)
			}
			if !pidFree(tg.pid) {
				t.Fatalf("pid %d taken after the refused restore", tg.pid)
			}
			if err := os.Remove(tc.path); err != nil {
				t.Fatal(err)
			}
		})
	}
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestUnixNamedTrust: a uid-65534 process's socket bound in a directory
// of its own is restored from its image, trusted as 65534's, with the
// socket file owned by 65534 with its mode; the image edited to bind in
// a directory only root may write to, or to give the file to root, is
// refused naming the file, and nothing is created there.
func TestUnixNamedTrust(t *testing.T) {
	testutil.RequireRoot(t)
	pub, err := os.MkdirTemp("", "rtcr-unixtrust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	sockDir, rootDir := filepath.Join(pub, "own"), filepath.Join(pub, "root")
	for _, d := range []string{sockDir, rootDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(testutil.BuildC(t, "unixnamed", false))
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(pub, "unixnamed")
	if err := os.WriteFile(own, b, 0o711); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sockDir, "nsock")
	tg := start(t, "/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", own, "trigger", "bound", path)
	for _, p := range []string{filepath.Dir(tg.dir), tg.dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(tg.out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	chownImage(t, dir)
	manifest := filepath.Join(dir, image.ManifestName)
	good, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(a *image.UnixAddr)
		want string
	}{
		{"root's directory", func(a *image.UnixAddr) {
			a.Path = filepath.Join(rootDir, "nsock")
			a.Name = []byte(a.Path)
		}, "create a file in it"},
		{"owned by root", func(a *image.UnixAddr) { a.Uid, a.Gid = 0, 0 }, "owned by 0:0, not by the process"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			editManifest(t, dir, func(c *image.Checkpoint) {
				for i := range c.Processes[0].FDs {
					if s := c.Processes[0].FDs[i].Sock; s != nil && s.Addr != nil {
						tc.edit(s.Addr)
					}
				}
			})
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, TrustImageOwner: true})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v, want an error naming %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(rootDir); len(ents) != 0 {
				t.Fatalf("%s holds %v after the refused restore", rootDir, ents)
			}
			if !pidFree(tg.pid) {
				t.Fatalf("pid %d taken after the refused restore", tg.pid)
			}
			if err := os.WriteFile(manifest, good, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, TrustImageOwner: true}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
	}
}
