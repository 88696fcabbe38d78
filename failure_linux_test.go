package rtcr_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs with the given options on a fresh directory.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount tmpfs %s: %v", opts, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestFailedDumpLeavesTargetRunning makes dumps fail in different places and
// checks each time that the target runs on, untraced, unchanged.
func TestFailedDumpLeavesTargetRunning(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name    string
		prog    string
		dir     func(t *testing.T) string
		wantErr string
	}{
		{"read-only directory", "counter", func(t *testing.T) string {
			return filepath.Join(mountTmpfs(t, "ro,size=1m"), "img")
		}, "read-only file system"},
		{"disk full while writing pages", "counter", func(t *testing.T) string {
			return filepath.Join(mountTmpfs(t, "size=16k"), "img")
		}, "no space left on device"},
		{"path is a file", "counter", func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "file")
			_ = os.WriteFile(f, nil, 0o600)
			return f
		}, "not a directory"},
		{"unsupported fd", "unsupported", func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "img")
		}, "socket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, tc.prog, false))
			testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: tc.dir(t)})
			if err == nil {
				t.Fatal("dump succeeded, want an error")
			}
			if !strings.Contains(strings.ToLower(err.Error()), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			t.Logf("dump error: %v", err)
			assertRunning(t, tg)
			checkConsecutive(t, testutil.WaitForLines(t, tg.out, 0, time.Second)[1:])
		})
	}
}

// TestUnsupportedFDIsNamed checks the error names the fd and its kind.
func TestUnsupportedFDIsNamed(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "unsupported", false))
	testutil.WaitForLines(t, tg.out, 2, 10*time.Second)
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
	if !errors.Is(err, files.ErrUnsupported) || !strings.Contains(err.Error(), "fd 3 (socket:[") {
		t.Fatalf("error %v, want ErrUnsupported naming fd 3 (socket)", err)
	}
}

// TestFailedDumpKeepsMemoryIntact fails a dump of the heap program after
// injection and part of the memory copy, then checks its memory.
func TestFailedDumpKeepsMemoryIntact(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "heap", false), "16", "3", "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: filepath.Join(mountTmpfs(t, "size=1m"), "img")})
	if err == nil {
		t.Fatal("dump into a 1 MiB tmpfs of 16 MiB succeeded")
	}
	tg.fire()
	if code := tg.waitOriginal(); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("heap after failed dump: exit %d, output:\n%s", code, tg.output())
	}
}

// TestInterruptedDump cancels a dump midway (as Ctrl-C does in the command).
func TestInterruptedDump(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := rtcr.Dump(ctx, rtcr.DumpOptions{Pid: tg.pid, Dir: filepath.Join(t.TempDir(), "img")})
	if !errors.Is(err, rtcr.ErrInterrupted) {
		t.Fatalf("error %v, want ErrInterrupted", err)
	}
	assertRunning(t, tg)
}

// TestRestoreRefusals checks restores that must be refused before any
// process is created: the pid is in use, a file changed, a file vanished.
func TestRestoreRefusals(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("pid in use", func(t *testing.T) {
		tg := start(t, testutil.BuildC(t, "counter", false))
		testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
		dir := tg.dump(true)
		_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
		if !errors.Is(err, rtcr.ErrPidTaken) {
			t.Fatalf("error %v, want ErrPidTaken", err)
		}
		assertRunning(t, tg)
	})
	for _, change := range []string{"truncated", "removed"} {
		t.Run("open file "+change, func(t *testing.T) {
			data := writeDataFile(t)
			tg := start(t, testutil.BuildC(t, "mapfile", false), data, "trigger")
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			dir := tg.dump(false)
			if change == "removed" {
				_ = os.Remove(data)
			} else {
				_ = os.Truncate(data, 100)
			}
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), data) {
				t.Fatalf("error %v, want a refusal naming %s", err, data)
			}
			t.Logf("refused: %v", err)
			if !pidFree(tg.pid) {
				t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
			}
		})
	}
}

// TestFailedDumpKeepsOldImage: a dump over an existing image that fails
// (here: the target gets a socket) leaves the old image restorable, and a
// dump that succeeds replaces it.
func TestFailedDumpKeepsOldImage(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	dir := filepath.Join(t.TempDir(), "img")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, LeaveRunning: true}); err != nil {
		t.Fatal(err)
	}
	first, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := names(t, dir)
	other := start(t, testutil.BuildC(t, "unsupported", false))
	testutil.WaitForLines(t, other.out, 2, 10*time.Second)
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: other.pid, Dir: dir}); err == nil {
		t.Fatal("dump of a process with a socket succeeded")
	}
	kept, err := image.ReadManifest(dir)
	if err != nil || kept.Processes[0].Pid != first.Processes[0].Pid {
		t.Fatalf("after a failed dump the old image is gone or changed: %v", err)
	}
	if after := names(t, dir); !slices.Equal(after, files) {
		t.Errorf("the failed dump changed the directory: %v, was %v", after, files)
	}
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, LeaveRunning: true}); err != nil {
		t.Fatal(err)
	}
	second, err := image.ReadManifest(dir)
	if err != nil || second.Created == first.Created {
		t.Fatalf("a successful dump did not replace the image: %v", err)
	}
}

// TestForeignNamespaceRefused: a process in another network namespace is
// refused (its sockets and addresses would mean something else), and runs on.
func TestForeignNamespaceRefused(t *testing.T) {
	testutil.RequireRoot(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	tg := start(t, unshare, "--net", testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	_, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: filepath.Join(t.TempDir(), "img")})
	if !errors.Is(err, tree.ErrUnsupported) || !strings.Contains(err.Error(), "net namespace") {
		t.Fatalf("error %v, want a refusal naming the net namespace", err)
	}
	assertRunning(t, tg)
}

// TestDumpIntoDirWithOtherFiles: an image directory that also holds other
// files (or is "."-relative) is written in place; the other files and the
// directory's mode stay, page files of a killed dump go.
func TestDumpIntoDirWithOtherFiles(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "notes.txt")
	stale := filepath.Join(dir, image.PageFileName("00000000000000aa", 1))
	for _, f := range []string{notes, stale} {
		if err := os.WriteFile(f, []byte("keep?"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 2; round++ {
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir + "/.", LeaveRunning: true}); err != nil {
			t.Fatalf("dump %d: %v", round, err)
		}
	}
	if _, err := image.ReadManifest(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(notes); err != nil {
		t.Errorf("the dump removed an unrelated file: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a stale page file is still there: %v", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("directory mode changed: %v %v", st.Mode(), err)
	}
}
