package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/mem"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// shmDir returns a fresh directory under /dev/shm (tmpfs, where POSIX
// shared memory and semaphores live), removed at the end of the test.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "rtcr-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// TestMemfdAndDeletedMappings checkpoints testdata/memmap.c, a parent and
// a child mapping memfds (one also open as an fd, mapped shared and
// private; one held only by the mapping) and unlinked files (one mapped
// shared by both processes with no fd left, as Python's semaphores; one
// open and mapped private), kills them and restores them: the child's
// writes show in the parent, each fd and the mappings of its file are one
// file again (writes through one are seen through the other), and the
// private mappings keep their copied pages while the others follow the
// file.
func TestMemfdAndDeletedMappings(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "memmap", false), "trigger", shmDir(t))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("memfd and deleted-file mappings")
}

// TestMappedFileChanged: a file mapped shared or private (no page copied:
// the memory is the file's) that changed after the dump is refused at
// restore, before any process exists, naming the file and the mapping's
// address; its size, mtime or, when mtime was set back, ctime shows the
// change. An unchanged one restores and still shows its contents.
func TestMappedFileChanged(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "mapchanged", false)
	tests := []struct {
		name, mode string
		change     func(t *testing.T, path string)
		want       string // "" : restores
	}{
		{"shared unchanged", "shared", nil, ""},
		{"private unchanged", "private", nil, ""},
		{"shared rewritten", "shared", func(t *testing.T, path string) { rewrite(t, path, false) }, "mtime"},
		{"private rewritten", "private", func(t *testing.T, path string) { rewrite(t, path, false) }, "mtime"},
		{"shared rewritten, mtime set back", "shared", func(t *testing.T, path string) { rewrite(t, path, true) }, "ctime"},
		{"private grown", "private", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("more")); err != nil {
				t.Fatal(err)
			}
		}, "size 65540, was 65536"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := writeDataFile(t)
			tg := start(t, bin, "trigger", data, tc.mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			var addr uint64
			if _, err := fmt.Sscanf(tg.output(), "addr 0x%x", &addr); err != nil {
				t.Fatalf("output %q: %v", tg.output(), err)
			}
			dir := tg.dump(false)
			if tc.change == nil {
				tg.restore(dir)
				tg.fire()
				if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
					t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
				}
				return
			}
			tc.change(t, data)
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if !errors.Is(err, mem.ErrFileChanged) || !strings.Contains(err.Error(), data) ||
				!strings.Contains(err.Error(), fmt.Sprintf("%s mapping %#x-", tc.mode, addr)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want mem.ErrFileChanged naming %s, the %s mapping at %#x and %q", err, data, tc.mode, addr, tc.want)
			}
			t.Logf("refused: %v", err)
			if !pidFree(tg.pid) {
				t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
			}
		})
	}
}

// rewrite changes one byte of path in place (same size) and, with
// setBack, sets its mtime back to what it was.
func rewrite(t *testing.T, path string, setBack bool) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xff}, 4096+1); err != nil {
		t.Fatal(err)
	}
	if setBack {
		if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPosixShm checkpoints testdata/posixshm.c, a parent and a child with
// a POSIX shared memory object (shm_open) open and mapped shared, kills
// them and restores them: the object is the same /dev/shm file, the
// child's write shows in the parent, and writes through the fd show in
// the mapping.
func TestPosixShm(t *testing.T) {
	testutil.RequireRoot(t)
	name := fmt.Sprintf("/rtcr-test-posixshm-%d", os.Getpid())
	t.Cleanup(func() { _ = os.Remove("/dev/shm" + name) })
	tg := start(t, testutil.BuildC(t, "posixshm", false), "trigger", name)
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("POSIX shared memory")
}

// TestSharedAnonViews checkpoints testdata/shmviews.c, whose processes
// map shared anonymous memory through views of different sizes (one
// shrank its view after the fork, one grew it past the object with
// mremap, one process maps the same memory twice), kills them and
// restores them: every view shows its own range of the one memory (pages
// only the later process mapped included), a view past the object's end
// still raises SIGBUS there, and writes through one view show in the
// others; named anonymous memory keeps its name (on kernels with
// CONFIG_ANON_VMA_NAME).
func TestSharedAnonViews(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "shmviews", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("shared anonymous memory views")
	if strings.Contains(tg.output(), "no anon names") {
		t.Log("this kernel has no CONFIG_ANON_VMA_NAME: anonymous memory names not checked")
	}
}

// TestSysVShm checkpoints testdata/sysvshm.c, a parent and a child
// sharing a SysV segment with a key (attached read-write, split by
// mprotect, and read-only) and a private one marked removed while
// attached, kills them and restores them. The first segment outlives the
// kill and is reused (its contents reset to the checkpoint's), or, after
// the test removes it, is created again with its id and key; the removed
// one is created again with its id and marked removed. The program checks
// that both are still shared (the child's writes show in the parent), the
// read-only attachment refuses writes, the key, size, mode and attach
// count, and that the removed segment goes at its last detach. A key
// taken by another segment meanwhile is refused before any process
// exists, and so is an id another segment took; a segment also attached
// outside the tree is refused at dump,
// and the program runs on.
func TestSysVShm(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "sysvshm", false)
	for i, tc := range []string{"reused", "recreated", "key taken", "id taken", "attached outside"} {
		t.Run(tc, func(t *testing.T) {
			key := 0x52740000 | (os.Getpid()&0xfff)<<4 | i
			tg := start(t, bin, "trigger", fmt.Sprint(key))
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			var s1, s2 int
			if _, err := fmt.Sscanf(tg.output(), "ids %d %d", &s1, &s2); err != nil {
				t.Fatalf("output %q: %v", tg.output(), err)
			}
			t.Cleanup(func() {
				for _, id := range []int{s1, s2} {
					_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
				}
			})
			if tc == "attached outside" {
				// The test attaches S1 too: the dump must refuse and
				// leave the program running.
				b, err := unix.SysvShmAttach(s1, 0, unix.SHM_RDONLY)
				if err != nil {
					t.Fatal(err)
				}
				_, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
				if !errors.Is(err, mem.ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("SysV shm id %d", s1)) ||
					!strings.Contains(err.Error(), "outside") {
					t.Fatalf("error %v, want mem.ErrUnsupported naming SysV shm id %d attached outside the tree", err, s1)
				}
				t.Logf("refused: %v", err)
				if err := unix.SysvShmDetach(b); err != nil {
					t.Fatal(err)
				}
				tg.runsOnOK()
				return
			}
			dir := tg.dump(false)
			if tc == "reused" {
				// Changed after the dump: restore must reset it.
				b, err := unix.SysvShmAttach(s1, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				b[2*image.PageSize+5] ^= 0xff
				if err := unix.SysvShmDetach(b); err != nil {
					t.Fatal(err)
				}
			} else {
				if _, err := unix.SysvShmCtl(s1, unix.IPC_RMID, nil); err != nil {
					t.Fatal(err)
				}
			}
			if tc == "key taken" || tc == "id taken" {
				otherKey := key
				if tc == "id taken" {
					// Another segment (no key, another size) gets S1's id.
					otherKey = 0
					if err := os.WriteFile("/proc/sys/kernel/shm_next_id", []byte(fmt.Sprint(s1)), 0); err != nil {
						t.Fatal(err)
					}
				}
				other, err := unix.SysvShmGet(otherKey, image.PageSize, unix.IPC_CREAT|0o600)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _, _ = unix.SysvShmCtl(other, unix.IPC_RMID, nil) })
				if tc == "id taken" && other != s1 {
					t.Skipf("another segment took the id meanwhile (got %d, want %d)", other, s1)
				}
				_, err = rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
				if !errors.Is(err, mem.ErrSysVTaken) || !strings.Contains(err.Error(), fmt.Sprintf("SysV shm id %d (key %#x", s1, key)) {
					t.Fatalf("error %v, want mem.ErrSysVTaken naming SysV shm id %d and key %#x", err, s1, key)
				}
				t.Logf("refused: %v", err)
				if !pidFree(tg.pid) {
					t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
				}
				return
			}
			tg.restore(dir)
			tg.fire()
			if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("SysV shared memory after restore: exit %d, output:\n%s", code, tg.output())
			}
		})
	}
}

// TestSharedMemoryRun is TestMemfdAndDeletedMappings and TestSysVShm in
// an `rtcr run` tree (a new pid namespace): the files' homes and the SysV
// segments' first attachments are named by pids in the namespace.
func TestSharedMemoryRun(t *testing.T) {
	testutil.RequireRoot(t)
	key := 0x52750000 | (os.Getpid()&0xfff)<<4
	for _, args := range [][]string{
		{testutil.BuildC(t, "memmap", false), "trigger", shmDir(t)},
		{testutil.BuildC(t, "sysvshm", false), "trigger", fmt.Sprint(key)},
	} {
		t.Run(args[0][strings.LastIndexByte(args[0], '/')+1:], func(t *testing.T) {
			tg := start(t, testutil.BuildRtcr(t), append([]string{"run", "--"}, args...)...)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			var s1, s2 int
			if _, err := fmt.Sscanf(tg.output(), "ids %d %d", &s1, &s2); err == nil {
				t.Cleanup(func() {
					for _, id := range []int{s1, s2} {
						_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
					}
				})
			}
			dir := t.TempDir() + "/img"
			if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
				t.Fatalf("dump: %v", err)
			}
			tg.waitOriginal()
			st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			tg.pid, tg.done = st.Pid, false // the restored init is our child now
			tg.fire()
			if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("after restore in a pid namespace: exit %d, output:\n%s", code, tg.output())
			}
		})
	}
}

// TestPythonPool checkpoints python3 running testdata/pypool.py, a
// multiprocessing.Pool of two forked workers whose locks are semaphores
// mapped from unlinked /dev/shm/sem.* files (refused before rtcr restored
// deleted-file mappings), kills the tree, restores it and runs maps
// through the same pool.
func TestPythonPool(t *testing.T) {
	testutil.RequireRoot(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tg := start(t, python, filepath.Join(root, "testdata", "pypool.py"), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(30 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("python pool after restore: exit %d, output:\n%s", code, tg.output())
	}
}
