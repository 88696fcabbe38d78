package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// unprivileged is a uid-65534 user with the two capabilities a restore
// without root has, in a directory tree it owns.
type unprivileged struct {
	t    *testing.T
	rtcr string // the rtcr binary, in a directory anyone can read
	bin  string // the counter, likewise
	home string // 0700, owned by 65534: images, cwd and output
}

// newUnprivileged copies rtcr and the counter where uid 65534 can run them
// (the build directories may be root-only) and makes it a home.
func newUnprivileged(t *testing.T) *unprivileged {
	t.Helper()
	testutil.RequireRoot(t)
	base, err := os.MkdirTemp("", "rtcr-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &unprivileged{t: t, home: filepath.Join(base, "home")}
	u.rtcr = copyExecutable(t, testutil.BuildRtcr(t), filepath.Join(base, "rtcr"))
	u.bin = copyExecutable(t, testutil.BuildC(t, "counter", false), filepath.Join(base, "counter"))
	if err := os.Mkdir(u.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return u
}

// copyExecutable copies the executable src to dst, mode 0755.
func copyExecutable(t *testing.T, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// attrs returns process attributes for uid/gid 65534 without groups, with
// caps as ambient (so effective and permitted) capabilities.
func attrs(caps ...uintptr) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}},
		AmbientCaps: caps,
	}
}

// startCounter starts the counter as 65534 without capabilities, in dir
// (owned by 65534) with its stdout in dir/out, opened O_APPEND.
func (u *unprivileged) startCounter(dir string) *target {
	t := u.t
	t.Helper()
	out, f := testutil.OutputFile(t, dir)
	defer f.Close()
	if err := os.Chown(out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(u.bin)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	cmd.SysProcAttr = attrs()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, cmd: cmd, pid: cmd.Process.Pid, out: out, dir: dir}
	t.Cleanup(tg.kill)
	testutil.WaitForLines(t, out, 20, 10*time.Second)
	return tg
}

// run runs rtcr with args as 65534 with CAP_CHECKPOINT_RESTORE and
// CAP_SYS_PTRACE only, and returns its combined output and error.
func (u *unprivileged) run(args ...string) (string, error) {
	u.t.Helper()
	cmd := exec.Command(u.rtcr, args...)
	cmd.Dir = u.home
	cmd.SysProcAttr = attrs(unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SYS_PTRACE)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// statusField returns the value of field in /proc/PID/status.
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// TestUnprivileged dumps and restores a uid-65534 counter as uid 65534
// with only CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE (ambient, through
// the rtcr command): the counter continues its sequence as uid 65534 with
// no capabilities. Then, as the same user, an image edited to uid 0 and a
// root-owned image of a root process are refused, and no root process
// comes out of either.
func TestUnprivileged(t *testing.T) {
	u := newUnprivileged(t)
	// The rtcr process really runs as 65534 with exactly the two
	// capabilities (and no groups).
	probe := exec.Command("/bin/cat", "/proc/self/status")
	probe.SysProcAttr = attrs(unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SYS_PTRACE)
	b, err := probe.Output()
	if err != nil {
		t.Fatalf("start a process as 65534 with ambient capabilities: %v", err)
	}
	wantCaps := fmt.Sprintf("%016x", uint64(1)<<unix.CAP_CHECKPOINT_RESTORE|uint64(1)<<unix.CAP_SYS_PTRACE)
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Groups:\t \n", "CapEff:\t" + wantCaps, "CapPrm:\t" + wantCaps} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("probe as 65534 lacks %q:\n%s", want, b)
		}
	}

	tg := u.startCounter(u.home)
	img := filepath.Join(u.home, "img")
	if out, err := u.run("dump", "--pid", strconv.Itoa(tg.pid), "--dir", img); err != nil {
		t.Fatalf("dump as 65534: %v\n%s", err, out)
	}
	tg.reap()
	before := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	if out, err := u.run("restore", "--dir", img); err != nil {
		t.Fatalf("restore as 65534: %v\n%s", err, out)
	}
	lines := testutil.WaitForLines(t, tg.out, before+30, 10*time.Second)
	if first := checkConsecutive(t, lines); first != 0 {
		t.Fatalf("counter started at %d, want 0", first)
	}
	for field, want := range map[string]string{
		"Uid": "65534 65534 65534 65534", "Gid": "65534 65534 65534 65534", "Groups": "",
		"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapInh": "0000000000000000",
		"CapAmb": "0000000000000000", "TracerPid": "0",
	} {
		if got := statusField(t, tg.pid, field); got != want {
			t.Errorf("restored %d: %s is %q, want %q", tg.pid, field, got, want)
		}
	}

	// PR_SET_MM_MAP (with the exe fd) worked without CAP_SYS_RESOURCE.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", tg.pid)); err != nil || exe != u.bin {
		t.Errorf("restored %d: exe %q (%v), want %q", tg.pid, exe, err, u.bin)
	}

	t.Run("rlimit above the restorer's", func(t *testing.T) {
		killOrphan(t, tg.pid)
		cmd := exec.Command("/usr/bin/prlimit", "--nofile=64:64", "--", u.rtcr, "restore", "--dir", img)
		cmd.Dir = u.home
		cmd.SysProcAttr = attrs(unix.CAP_CHECKPOINT_RESTORE, unix.CAP_SYS_PTRACE)
		b, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("restore with hard RLIMIT_NOFILE 64 succeeded:\n%s", b)
		}
		// Refused before any process exists, naming the limit.
		for _, want := range []string{"rlimit 7: hard limit", "above rtcr's own 64", "CAP_SYS_RESOURCE"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("refusal lacks %q:\n%s", want, b)
			}
		}
		t.Logf("refused: %s", bytes.TrimSpace(b))
		waitGone(t, tg.pid)
	})

	t.Run("edited to uid 0", func(t *testing.T) {
		dir := filepath.Join(u.home, "img")
		killOrphan(t, tg.pid) // the restored counter; the image is still the same
		editManifest(t, dir, func(c *image.Checkpoint) {
			cr := c.Processes[0].Creds
			cr.Uid, cr.Euid, cr.Suid, cr.Fsuid = 0, 0, 0, 0
			cr.CapEff, cr.CapPrm = 1<<41-1, 1<<41-1
		})
		out, err := u.run("restore", "--dir", dir)
		if err == nil {
			t.Fatalf("restore of an image edited to uid 0 succeeded:\n%s", out)
		}
		if !strings.Contains(out, image.ErrUntrusted.Error()) || !strings.Contains(out, "uid") {
			t.Errorf("refusal does not say why:\n%s", out)
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
		if !pidFree(tg.pid) {
			t.Errorf("pid %d exists after a refused restore (uid %s)", tg.pid, statusField(t, tg.pid, "Uid"))
		}
	})

	t.Run("root image", func(t *testing.T) {
		// A root counter whose image and output 65534 can read and
		// write: only its credentials are out of 65534's reach.
		dir, err := os.MkdirTemp("", "rtcr-nonroot-root-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		rt := startRootCounter(t, u.bin, dir)
		img := filepath.Join(dir, "img")
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: rt.pid, Dir: img}); err != nil {
			t.Fatalf("dump as root: %v", err)
		}
		rt.reap()
		if err := os.Chmod(img, 0o755); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if err := os.Chmod(filepath.Join(img, e.Name()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := u.run("restore", "--dir", img)
		if !pidFree(rt.pid) {
			uid := statusField(t, rt.pid, "Uid")
			killOrphan(t, rt.pid)
			t.Fatalf("restore of a root image as 65534 left pid %d (uid %s); rtcr said: %v\n%s", rt.pid, uid, err, out)
		}
		if err == nil {
			t.Fatalf("restore of a root image as 65534 succeeded:\n%s", out)
		}
		// Refused up front, naming why, not by the kernel half way.
		for _, want := range []string{"image owned by root, restored by uid 65534 without root",
			"uid 0 is not the restoring user's uid 65534", image.ErrUntrusted.Error()} {
			if !strings.Contains(out, want) {
				t.Errorf("refusal lacks %q:\n%s", want, out)
			}
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
	})
}

// startRootCounter starts the counter as root in a fresh directory under
// dir, with its stdout dir/…/out a file 65534 may write.
func startRootCounter(t *testing.T, bin, dir string) *target {
	t.Helper()
	cwd, err := os.MkdirTemp(dir, "cwd-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(cwd, "out")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Chmod(out, 0o666); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir, cmd.Stdout, cmd.Stderr = cwd, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg := &target{t: t, cmd: cmd, pid: cmd.Process.Pid, out: out, dir: cwd}
	t.Cleanup(tg.kill)
	testutil.WaitForLines(t, out, 20, 10*time.Second)
	return tg
}

// killOrphan kills pid, a restored process whose parent (rtcr) has exited,
// and waits until init has reaped it.
func killOrphan(t *testing.T, pid int) {
	t.Helper()
	_ = unix.Kill(pid, unix.SIGKILL)
	waitGone(t, pid)
}

// waitGone waits until no process has pid, failing after 30 s (a zombie
// nobody reaps, say) with its state.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !pidFree(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%d is still there (state %q) after 30 s", pid, state(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
