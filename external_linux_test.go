package rtcr_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// extTarget is testdata/external.c started with a pipe it reads at fd 5,
// a stream socket at fd 6 and a pipe it writes at fd 7, whose other ends
// the test holds.
type extTarget struct {
	cmd                     *exec.Cmd
	pid                     int
	dir, out                string
	pipeW, sock, back       *os.File // the test's ends
	pipeID, sockID, writeID string
}

func startExternal(t *testing.T, mode string) *extTarget {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sa, sb := socketPair(t)
	qr, qw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := &extTarget{dir: t.TempDir(), pipeW: pw, sock: sb, back: qr,
		pipeID: "pipe:[" + inode(t, pr) + "]", sockID: "socket:[" + inode(t, sa) + "]", writeID: "pipe:[" + inode(t, qw) + "]"}
	x.out = filepath.Join(x.dir, "out")
	f, err := os.Create(x.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x.cmd = exec.Command(testutil.BuildC(t, "external", false), "trigger", mode)
	x.cmd.Dir, x.cmd.Stdout, x.cmd.Stderr = x.dir, f, f
	x.cmd.ExtraFiles = []*os.File{nil, nil, pr, sa, qw}
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	x.pid = x.cmd.Process.Pid
	pr.Close()
	sa.Close()
	qw.Close()
	t.Cleanup(func() {
		_ = unix.Kill(x.pid, unix.SIGKILL)
		_ = x.cmd.Wait()
		pw.Close()
		sb.Close()
		qr.Close()
	})
	testutil.WaitForFile(t, x.out, "ready\n", 10*time.Second)
	return x
}

// socketPair returns both ends of a unix stream socket pair as files.
func socketPair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	sv, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(sv[0]), "sock0"), os.NewFile(uintptr(sv[1]), "sock1")
}

func inode(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(st.Ino)
}

// dumpKilled writes bytes into the pipe and the socket that the target
// leaves unread, dumps it (which kills it) and reaps it.
func (x *extTarget) dumpKilled(t *testing.T) string {
	t.Helper()
	if _, err := x.pipeW.Write([]byte("pre-pipe")); err != nil {
		t.Fatal(err)
	}
	if _, err := x.sock.Write([]byte("pre-sock")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: x.pid, Dir: img}); err != nil {
		t.Fatalf("dump with external pipe and socket: %v", err)
	}
	_ = x.cmd.Wait()
	return img
}

// restoreCLI runs `rtcr restore` with extra as its fd 3 and returns its
// stderr.
func (x *extTarget) restoreCLI(t *testing.T, img string, extra *os.File, args ...string) string {
	t.Helper()
	cmd := exec.Command(testutil.BuildRtcr(t), append([]string{"restore", "--dir", img}, args...)...)
	cmd.ExtraFiles = []*os.File{extra}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("rtcr restore %v: %v: %s", args, err, stderr.String())
	}
	return stderr.String()
}

// finish fires the trigger and requires the restored target to write OK.
func (x *extTarget) finish(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(x.dir, "trigger"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(x.out)
		if strings.Contains(string(b), "OK\n") {
			return
		}
		if strings.Contains(string(b), "FAIL") || time.Now().After(deadline) {
			t.Fatalf("restored target did not write OK:\n%s", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExternalInheritPipe dumps testdata/external.c, whose pipes and
// socket lead to the test (outside the tree): the dump succeeds, `rtcr
// inspect` lists the three IDs with pid and fd. The restore gives the
// pipe at fd 5 (and its dup at 9) a new pipe of the test with --inherit-fd:
// the bytes buffered at dump come first, then what the test writes after
// the restore, then end of file; fds 6 and 7 get a socket pair and a pipe
// whose other end is closed (EOF after the queued "pre-sock", EPIPE), each
// with a warning naming the pid, the fd and the ID; status flags are kept.
func TestExternalInheritPipe(t *testing.T) {
	testutil.RequireRoot(t)
	x := startExternal(t, "pipe")
	img := x.dumpKilled(t)

	out, err := exec.Command(testutil.BuildRtcr(t), "inspect", "--dir", img).CombinedOutput()
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	t.Logf("rtcr inspect:\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("%s  %d  5  pipe, read end", x.pipeID, x.pid),
		fmt.Sprintf("%s  %d  9  pipe, read end", x.pipeID, x.pid),
		fmt.Sprintf("%s  %d  6   unix socket, stream", x.sockID, x.pid),
		fmt.Sprintf("%s  %d  7  pipe, write end", x.writeID, x.pid),
		"8 B",
	} {
		if !strings.Contains(strings.Join(strings.Fields(string(out)), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("inspect does not list %q:\n%s", want, out)
		}
	}

	nr, nw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	stderr := x.restoreCLI(t, img, nr, "--inherit-fd", "3:"+x.pipeID)
	nr.Close()
	t.Logf("rtcr restore stderr:\n%s", stderr)
	for _, want := range []string{
		fmt.Sprintf("warning: pid %d fd 6 (%s): no --inherit-fd", x.pid, x.sockID),
		fmt.Sprintf("warning: pid %d fd 7 (%s): no --inherit-fd", x.pid, x.writeID),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("restore stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "fd 5 ") || strings.Contains(stderr, "fd 9 ") {
		t.Errorf("restore warned about the inherited pipe:\n%s", stderr)
	}
	if _, err := nw.Write([]byte("post-pipe")); err != nil {
		t.Fatal(err)
	}
	nw.Close()
	x.finish(t)
}

// TestExternalInheritSocket restores the same program with the socket
// inherited, in CRIU's fd[N]:ID form: what the test sends on its new
// socket arrives, the reply comes back; the "pre-sock" queued at dump
// cannot be queued to the new socket (a warning says so); the pipe at fd
// 5 becomes a pipe holding the bytes buffered at dump, then end of file,
// with a warning on stderr and in the log.
func TestExternalInheritSocket(t *testing.T) {
	testutil.RequireRoot(t)
	x := startExternal(t, "sock")
	img := x.dumpKilled(t)
	na, nb := socketPair(t)
	defer nb.Close()
	logFile := filepath.Join(t.TempDir(), "restore.log")
	stderr := x.restoreCLI(t, img, na, "--inherit-fd", "fd[3]:"+x.sockID, "-o", logFile)
	na.Close()
	log, err := os.ReadFile(logFile)
	if want := fmt.Sprintf(`level=WARN msg="no --inherit-fd for it: a new pipe whose write end is closed (the process reads what was buffered at dump, then end of file)" pid=%d fd=5 id=%s`, x.pid, x.pipeID); err != nil || !strings.Contains(string(log), want) {
		t.Errorf("restore log lacks %q (%v):\n%s", want, err, log)
	}
	t.Logf("rtcr restore stderr:\n%s", stderr)
	for _, want := range []string{
		fmt.Sprintf("warning: pid %d fd 5 (%s): no --inherit-fd", x.pid, x.pipeID),
		fmt.Sprintf("warning: pid %d fd 6 (%s): the 8 bytes (1 messages) queued", x.pid, x.sockID),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("restore stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := nb.Write([]byte("post-sock")); err != nil {
		t.Fatal(err)
	}
	x.finish(t)
	_ = nb.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 16)
	n, err := nb.Read(buf)
	if err != nil || string(buf[:n]) != "reply" {
		t.Fatalf("reply on the inherited socket: %q, %v", buf[:n], err)
	}
}

// TestInheritFDRefused: --inherit-fd with an ID the image does not have,
// with an fd rtcr does not have open, with a fd that cannot take the
// pipe's buffered bytes, or read-only for a pipe's write end, fails with one line naming the problem before
// any process is created (the pid stays free).
func TestInheritFDRefused(t *testing.T) {
	testutil.RequireRoot(t)
	x := startExternal(t, "pipe")
	img := x.dumpKilled(t)
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, tc := range []struct {
		arg, want string
		code      int
	}{
		{"3:pipe:[1]", "the image has no external object pipe:[1] (it has: " + x.pipeID, 1},
		{"9:" + x.pipeID, "rtcr's fd 9 is not open", 2},
		{"3:" + x.pipeID, "fd 3 is not a pipe", 1},
		{"3:" + x.writeID, "rtcr's fd 3 is open read-only, the image's fd 7 on it was open write-only", 1},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			cmd := exec.Command(testutil.BuildRtcr(t), "restore", "--dir", img, "--inherit-fd", tc.arg)
			cmd.ExtraFiles = []*os.File{null}
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code || strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, output %q; want exit %d and one line mentioning %q", err, out, tc.code, tc.want)
			}
			if !pidFree(x.pid) {
				t.Fatalf("pid %d exists after a refused restore", x.pid)
			}
		})
	}
	// The library checks the fd too.
	_, err = rtcr.Restore(rtcr.RestoreOptions{Dir: img, InheritFDs: []rtcr.InheritFD{{Fd: 1 << 20, ID: x.pipeID}}})
	if err == nil || !strings.Contains(err.Error(), "rtcr's fd 1048576 is not open") || !pidFree(x.pid) {
		t.Fatalf("library restore with fd 1048576: %v", err)
	}
}

// readNumbers reads number lines from r until it has n of them, or up to
// EOF when n < 0, and returns them (skipping rtcr restore's line).
func readNumbers(t *testing.T, r *os.File, n int) []int {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(20 * time.Second))
	var nums []int
	var buf []byte
	b := make([]byte, 4096)
	for n < 0 || len(nums) < n {
		k, err := r.Read(b)
		buf = append(buf, b[:k]...)
		for {
			i := strings.IndexByte(string(buf), '\n')
			if i < 0 {
				break
			}
			if strings.HasPrefix(string(buf[:i]), "restored pid ") {
				buf = buf[i+1:] // rtcr restore's own line
				continue
			}
			var v int
			if _, err := fmt.Sscan(string(buf[:i]), &v); err != nil {
				t.Fatalf("line %q: %v", buf[:i], err)
			}
			nums = append(nums, v)
			buf = buf[i+1:]
		}
		if err != nil {
			if n < 0 {
				return nums
			}
			t.Fatalf("read %d numbers of %d: %v", len(nums), n, err)
		}
	}
	return nums
}

// TestExternalStdout: a counter whose stdout is a pipe to the test is
// dumped; `rtcr restore --inherit-fd 3:pipe:[…]` makes the test's new pipe
// its stdout (fd 1: --inherit-fd overrides the default), and the numbers
// go on there from where the old pipe stopped. A second dump is restored
// without the flag: fd 1 is then the restorer's own stdout, as before, with
// no warning.
func TestExternalStdout(t *testing.T) {
	testutil.RequireRoot(t)
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	cmd := exec.Command(testutil.BuildC(t, "counter", false), "5")
	cmd.Stdout = w1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL); _ = cmd.Wait() })
	w1.Close()
	id := "pipe:[" + inode(t, r1) + "]"
	seen := readNumbers(t, r1, 3)
	img := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: img}); err != nil {
		t.Fatalf("dump of a counter writing into a pipe: %v", err)
	}
	_ = cmd.Wait()
	seen = append(seen, readNumbers(t, r1, -1)...) // up to EOF: the writer is gone
	last := seen[len(seen)-1]

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	restore := exec.Command(testutil.BuildRtcr(t), "restore", "--dir", img, "--inherit-fd", "3:"+id)
	restore.ExtraFiles = []*os.File{w2}
	if out, err := restore.CombinedOutput(); err != nil || strings.Contains(string(out), "warning") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	w2.Close()
	t.Cleanup(func() { _ = unix.Kill(pid, unix.SIGKILL) })
	got := readNumbers(t, r2, 5)
	if got[0] != last+1 {
		t.Fatalf("inherited stdout starts at %d, the old pipe ended at %d", got[0], last)
	}

	img2 := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: img2}); err != nil {
		t.Fatalf("second dump: %v", err)
	}
	waitGone(t, pid)
	got = append(got, readNumbers(t, r2, -1)...)
	last = got[len(got)-1]
	r3, w3, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	restore = exec.Command(testutil.BuildRtcr(t), "restore", "--dir", img2)
	var stderr strings.Builder
	restore.Stdout, restore.Stderr = w3, &stderr
	if err := restore.Run(); err != nil || strings.Contains(stderr.String(), "warning") {
		t.Fatalf("restore without --inherit-fd: %v\n%s", err, stderr.String())
	}
	w3.Close()
	got = readNumbers(t, r3, 5)
	if got[0] != last+1 {
		t.Fatalf("stdout of the restorer gets %v, the inherited pipe ended at %d", got, last)
	}
}

// TestExternalRunNamespace: a counter started by `rtcr run` with its
// stdout (and its init's) a pipe to the test is dumped through the run;
// rtcr.Restore with InheritFDs gives both processes, in their new pid
// namespace, the test's new pipe (passed with SCM_RIGHTS: the stubs
// cannot see rtcr's pid), and the numbers continue there.
func TestExternalRunNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	cmd := exec.Command(testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "counter", false), "5")
	cmd.Stdout = w1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w1.Close()
	id := "pipe:[" + inode(t, r1) + "]"
	seen := readNumbers(t, r1, 3)
	img := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: cmd.Process.Pid, Dir: img}); err != nil {
		t.Fatalf("dump of an rtcr run tree writing into a pipe: %v", err)
	}
	_ = cmd.Wait()
	seen = append(seen, readNumbers(t, r1, -1)...)
	last := seen[len(seen)-1]

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	var warnings strings.Builder
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: img, Warnings: &warnings, InheritFDs: []rtcr.InheritFD{{Fd: int(w2.Fd()), ID: id}}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Kill(st.Pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(st.Pid, &ws, 0, nil)
	})
	w2.Close()
	if warnings.Len() > 0 {
		t.Errorf("warnings: %s", warnings.String())
	}
	got := readNumbers(t, r2, 5)
	if got[0] != last+1 {
		t.Fatalf("inherited stdout starts at %d, the old pipe ended at %d", got[0], last)
	}
}
