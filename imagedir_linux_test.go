package rtcr_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// Tests of what dumps do to the image directory (internal/image/stage.go).

// names lists the entries of dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range ents {
		ns = append(ns, e.Name())
	}
	slices.Sort(ns)
	return ns
}

// imageFiles returns the manifest and the page files of the image in dir.
func imageFiles(t *testing.T, dir string) []string {
	t.Helper()
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	fs := []string{image.ManifestName}
	for _, p := range c.Processes {
		if p.PageFile != "" {
			fs = append(fs, p.PageFile)
		}
	}
	return fs
}

// TestDumpThroughSymlink: a dump into a symlink to an image directory
// writes into the directory it points to and leaves the link a link.
func TestDumpThroughSymlink(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	base := t.TempDir()
	real := filepath.Join(base, "real")
	link := filepath.Join(base, "link")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	var created []int64
	for round := 0; round < 2; round++ {
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: link, LeaveRunning: true}); err != nil {
			t.Fatalf("dump %d: %v", round, err)
		}
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("after dump %d %s is no longer a symlink (%v, %v)", round, link, fi.Mode(), err)
		}
		c, err := image.ReadManifest(real)
		if err != nil {
			t.Fatalf("after dump %d: %v", round, err)
		}
		created = append(created, c.Created)
		if got, want := names(t, real), sorted(imageFiles(t, real)); !slices.Equal(got, want) {
			t.Errorf("after dump %d %s holds %v, want %v", round, real, got, want)
		}
	}
	if created[0] == created[1] {
		t.Error("the second dump did not replace the image")
	}
	if got := names(t, base); !slices.Equal(got, []string{"link", "real"}) {
		t.Errorf("%s holds %v, want only link and real", base, got)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestFullDiskKeepsOldImage: a dump that runs out of space leaves the
// previous image restorable and the directory as it was, whatever the
// layout (the image shares its directory with other files; the directory
// is a mount point).
func TestFullDiskKeepsOldImage(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
	}{
		{"directory with other files", func(t *testing.T) string {
			dir := filepath.Join(mountTmpfs(t, "size=2m"), "img")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"mount point", func(t *testing.T) string {
			return mountTmpfs(t, "size=2m,mode=0700")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t)
			tg := start(t, testutil.BuildC(t, "counter", false))
			testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
			if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
				t.Fatal(err)
			}
			tg.reap()
			before := names(t, dir)

			big := start(t, testutil.BuildC(t, "heap", false), "16", "3", "trigger")
			testutil.WaitForFile(t, big.out, "ready\n", 10*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: big.pid, Dir: dir})
			if err == nil || !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("dump of 16 MiB into 2 MiB: %v, want no space left", err)
			}
			if after := names(t, dir); !slices.Equal(after, before) {
				t.Errorf("the failed dump changed the directory: %v, was %v", after, before)
			}
			n := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
			tg.restore(dir)
			testutil.WaitForLines(t, tg.out, n+5, 10*time.Second)
		})
	}
}

// TestKilledDumpTempFilesSwept: the temporary files of a dump killed with
// SIGKILL, and those of older versions, are removed by the next dump.
func TestKilledDumpTempFilesSwept(t *testing.T) {
	testutil.RequireRoot(t)
	rtcrBin := testutil.BuildRtcr(t)
	tg := start(t, testutil.BuildC(t, "heap", false), "256", "5", "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := filepath.Join(t.TempDir(), "img")

	cmd := exec.Command(rtcrBin, "dump", "--pid", strconv.Itoa(tg.pid), "--dir", dir, "--leave-running")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	temp := ""
	for deadline := time.Now().Add(60 * time.Second); temp == "" && time.Now().Before(deadline); {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".pages-") && strings.Contains(e.Name(), ".tmp-") {
				temp = e.Name()
			}
		}
		if temp == "" {
			time.Sleep(time.Millisecond)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if temp == "" {
		t.Fatal("never saw the dump's temporary page file")
	}
	if _, err := os.Stat(filepath.Join(dir, temp)); err != nil {
		t.Fatalf("the killed dump left no %s: %v", temp, err)
	}
	t.Logf("killed rtcr while it wrote %s", temp)
	// One of an earlier version's killed dumps, and one file that only
	// looks like a temporary file.
	for _, n := range []string{".pages-77.img.tmp-123", ".pages-notes.tmp-1"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The next dump (of another process: the target of a killed dump
	// may not survive it) sweeps them.
	next := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, next.out, 5, 10*time.Second)
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: next.pid, Dir: dir, LeaveRunning: true}); err != nil {
		t.Fatal(err)
	}
	want := sorted(append(imageFiles(t, dir), ".pages-notes.tmp-1"))
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("after the next dump %s holds %v, want %v", dir, got, want)
	}
}

// TestFailedDumpLeavesNoTrace: a dump that fails leaves no directory it
// created and nothing it wrote in a directory that existed.
func TestFailedDumpLeavesNoTrace(t *testing.T) {
	testutil.RequireRoot(t)
	zombie := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, zombie.out, 1, 10*time.Second)
	if err := unix.Kill(zombie.pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); state(zombie.pid) != 'Z' && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	heap := start(t, testutil.BuildC(t, "heap", false), "16", "3", "trigger")
	testutil.WaitForFile(t, heap.out, "ready\n", 10*time.Second)

	for _, tc := range []struct {
		name string
		pid  int
		base func(t *testing.T) string // where the dump may create "a/b/img"
	}{
		{"zombie root", zombie.pid, func(t *testing.T) string { return t.TempDir() }},
		{"disk full", heap.pid, func(t *testing.T) string { return mountTmpfs(t, "size=1m") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base(t)
			before := names(t, base)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tc.pid, Dir: filepath.Join(base, "a", "b", "img")})
			if err == nil {
				t.Fatal("dump succeeded")
			}
			t.Logf("dump error: %v", err)
			if after := names(t, base); !slices.Equal(after, before) {
				t.Errorf("the failed dump left %v in %s (was %v)", after, base, before)
			}

			// In an existing directory with other files: nothing new.
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.name == "disk full" {
				dir = filepath.Join(base, "x")
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			before = names(t, dir)
			if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tc.pid, Dir: dir}); err == nil {
				t.Fatal("dump succeeded")
			}
			if after := names(t, dir); !slices.Equal(after, before) {
				t.Errorf("the failed dump left %v in %s (was %v)", after, dir, before)
			}
		})
	}
}

// TestWritableDirectoryRefused: a group- or world-writable image
// directory is refused, naming it and its mode; the target runs on.
func TestWritableDirectoryRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	dir := filepath.Join(t.TempDir(), "img")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "0777") {
		t.Fatalf("dump into a 0777 directory: %v, want a refusal naming it and its mode", err)
	}
	t.Logf("refused: %v", err)
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("the refused dump left %v", got)
	}
	assertRunning(t, tg)
}

// TestDumpDirectorySwapped: the image directory is renamed away and a
// symlink to another directory put in its place after the dump opened it
// and before it writes: the image is written, complete and restorable,
// into the renamed directory, and nothing into the link's target.
func TestDumpDirectorySwapped(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	base := t.TempDir()
	dir := filepath.Join(base, "img")
	moved := filepath.Join(base, "img.moved")
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	rtcr.SetDumpStageHookForTest(func(string) {
		if err := os.Rename(dir, moved); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(other, dir); err != nil {
			t.Error(err)
		}
	})
	defer rtcr.SetDumpStageHookForTest(nil)
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	rtcr.SetDumpStageHookForTest(nil)
	tg.reap()
	if got := names(t, other); !slices.Equal(got, []string{"notes"}) {
		t.Errorf("the link's target %s holds %v, want only notes", other, got)
	}
	if got, want := names(t, moved), sorted(imageFiles(t, moved)); !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", moved, got, want)
	}
	n := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	tg.restore(moved)
	testutil.WaitForLines(t, tg.out, n+5, 10*time.Second)
}

// TestDumpRefusesOwnAncestor: pid 1, or any process rtcr descends from,
// is refused before anything is frozen or created: its tree would hold
// rtcr itself (pid 1's, the whole machine).
func TestDumpRefusesOwnAncestor(t *testing.T) {
	testutil.RequireRoot(t)
	for _, pid := range []int{1, os.Getppid()} {
		dir := filepath.Join(t.TempDir(), "img")
		_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "runs inside the tree") {
			t.Errorf("dump of ancestor %d: %v, want a refusal", pid, err)
		}
		if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("dump of ancestor %d created %s", pid, dir)
		}
	}
}
