package track

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// TestScanOwnMemory tracks a mapping of the test process itself: after
// protection, written pages are reported (once), dropped pages are empty
// and not written.
func TestScanOwnMemory(t *testing.T) {
	const n = 16
	mem, err := unix.Mmap(-1, 0, n*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	for i := 0; i < n; i++ {
		mem[i*4096] = 1
	}
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		t.Skipf("userfaultfd: %v", errno)
	}
	defer unix.Close(int(fd))
	if err := enable(int(fd)); err != nil {
		t.Skip(err)
	}
	start := uint64(uintptr(unsafe.Pointer(&mem[0])))
	page := func(i int) uint64 { return start + uint64(i)*4096 }
	if err := Register(int(fd), start, page(n)); err != nil {
		t.Fatal(err)
	}
	s, err := OpenScanner(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := s.Written(start, page(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 0 {
		t.Fatalf("written right after protection: %x", w)
	}
	mem[3*4096] = 2
	if err := unix.Madvise(mem[5*4096:7*4096], unix.MADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	e, err := s.Empty(start, page(n))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("empty: %x", e)
	w, err = s.Written(start, page(n))
	if err != nil {
		t.Fatal(err)
	}
	// A dropped page counts as written: its content changed (to zero).
	if len(w) != 2 || w[0] != [2]uint64{page(3), page(4)} || w[1] != [2]uint64{page(5), page(7)} {
		t.Fatalf("written: %x, want pages 3 and 5-6 (%x)", w, page(3))
	}
	e, err = s.Empty(start, page(n))
	t.Logf("empty after: %x %v", e, err)
	w, err = s.Written(start, page(n))
	if err != nil || len(w) != 0 {
		t.Fatalf("written after a scan that protected again: %x, %v", w, err)
	}
}

// TestSweep: the state files of a process that is gone and of a live
// process with another start time (a reused pid) are removed, an old
// temporary file too; a fresh temporary file and other names stay, and so
// does the state of the same pid in another pid namespace's directory.
func TestSweep(t *testing.T) {
	tempStateDir(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	if err := os.MkdirAll(stateDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, s State) {
		b, _ := json.Marshal(s)
		if err := os.WriteFile(filepath.Join(stateDir(), name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(StateDir, "pidns-1", strconv.Itoa(gone))
	if err := os.MkdirAll(filepath.Dir(other), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, []byte(`{"Pid":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	write(strconv.Itoa(gone), State{Pid: gone, StartTime: 1, Fd: MinFd})
	self := os.Getpid()
	write(strconv.Itoa(self), State{Pid: self, StartTime: 1, Fd: MinFd}) // not our start time
	write(".tmp-old", State{})
	write(".tmp-new", State{})
	write("notes", State{})
	past := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(stateDir(), ".tmp-old"), past, past)
	Sweep()
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("another pid namespace's state: %v", err)
	}
	ents, err := os.ReadDir(stateDir())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{".tmp-new", "notes"}) {
		t.Fatalf("after the sweep: %v, want [.tmp-new notes]", left)
	}
}

// TestLegacyStateMoved: a state file of the layout before the
// per-namespace directories that names its process with its start time is
// read and moved into this namespace's directory, so that an upgraded rtcr
// extends the chain; one that names another process (the same pid in
// another namespace) is left alone.
func TestLegacyStateMoved(t *testing.T) {
	tempStateDir(t)
	pid := os.Getpid()
	st, err := procfs.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(StateDir, strconv.Itoa(pid))
	other := fmt.Sprintf(`{"Pid":%d,"StartTime":%d,"Fd":1000}`, pid, st.StartTime+1)
	if err := os.WriteFile(legacy, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readState(pid); !os.IsNotExist(err) {
		t.Fatalf("readState of another process's legacy file: %q, %v; want not exist", b, err)
	}
	if _, err := os.Stat(legacy); err != nil {
		t.Fatalf("another process's legacy file was moved: %v", err)
	}
	mine := fmt.Sprintf(`{"Pid":%d,"StartTime":%d,"Fd":1000}`, pid, st.StartTime)
	if err := os.WriteFile(legacy, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := readState(pid)
	if err != nil || string(b) != mine {
		t.Fatalf("readState: %q, %v", b, err)
	}
	if _, err := os.Stat(statePath(pid)); err != nil {
		t.Fatalf("not moved into %s: %v", stateDir(), err)
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("the legacy file is still there: %v", err)
	}
	if _, err := readState(pid + 1); !os.IsNotExist(err) {
		t.Fatalf("readState of a pid without a file: %v, want not exist", err)
	}
}

// tempStateDir points StateDir at a directory of the test's until it
// ends; it skips the test without root (state files are root's).
func tempStateDir(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (state files are root's)")
	}
	old := StateDir
	StateDir = t.TempDir()
	t.Cleanup(func() { StateDir = old })
}
