package track

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// StateDir holds one directory per pid namespace (nsDir) with one state
// file per tracked process, named after its pid (mode 0600 in 0700
// directories: only root reads or writes them).
var StateDir = "/run/rtcr/track"

// nsDir names the directory of this rtcr's pid namespace under StateDir,
// after the namespace's inode ("pidns-4026531836"). A pid means another
// process in another namespace: two rtcr in two pid namespaces sharing
// /run (a test suite under unshare -p beside a user's dumps) must not
// read, or sweep, each other's state files.
var nsDir = sync.OnceValue(func() string {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return "pidns-unknown"
	}
	return "pidns-" + strconv.FormatUint(st.Ino, 10)
})

// stateDir is the directory of this pid namespace's state files.
func stateDir() string { return filepath.Join(StateDir, nsDir()) }

// State records that a process's memory is tracked and since which image.
type State struct {
	// Pid is the process; StartTime its start time (/proc/PID/stat
	// field 22), so that a reused pid is never trusted.
	Pid       int
	StartTime uint64
	// Fd is the target's copy of the userfaultfd.
	Fd int
	// ImageID is the image whose pages the tracking is relative to: the
	// pages written since it was dumped are those reported as written.
	// Empty while a dump runs (or after one failed): tracking is then
	// valid for no image until a dump completes.
	ImageID string
	// Dir is that image's directory (absolute), for messages.
	Dir string
	// Stray, while Create runs, is the number the injected userfaultfd
	// gets before dup3 moves it to Fd (the lowest free fd of the frozen
	// process): an rtcr killed between the two leaves it there, and the
	// next dump closes it (LoadStray). Nil once the fd is at Fd.
	Stray *int `json:",omitempty"`
}

func statePath(pid int) string { return filepath.Join(stateDir(), strconv.Itoa(pid)) }

// readState reads the state file of pid. A file of the layout before the
// per-namespace directories (StateDir/PID, written by an older rtcr) is
// moved into this namespace's directory first when it names pid with its
// start time, so that an upgrade in the middle of a chain keeps its
// tracking (Load then checks it as any other); a file of that layout that
// names another process (the same pid in another namespace: the old
// layout did not say which) is left where it is.
func readState(pid int) ([]byte, error) {
	b, err := os.ReadFile(statePath(pid))
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	old := filepath.Join(StateDir, strconv.Itoa(pid))
	ob, oerr := os.ReadFile(old)
	if oerr != nil || len(ob) > 1<<16 {
		return nil, err
	}
	var s State
	st, serr := procfs.ReadStat(pid)
	if json.Unmarshal(ob, &s) != nil || serr != nil || s.Pid != pid || s.StartTime != st.StartTime {
		return nil, err
	}
	if merr := os.MkdirAll(stateDir(), 0o700); merr != nil {
		return nil, merr
	}
	// Not over a file a concurrent Save made meanwhile.
	if rerr := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, statePath(pid), unix.RENAME_NOREPLACE); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && !errors.Is(rerr, fs.ErrExist) {
		return nil, rerr
	}
	return os.ReadFile(statePath(pid))
}

// Load returns the tracking state of pid, or nil when it has none: no
// state file, a pid that now names another process (the file is removed),
// or a fd that is no longer a userfaultfd.
func Load(pid int) (*State, error) {
	b, err := readState(pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		// Only root writes state files: an rtcr without root made none
		// (and cannot extend root's).
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tracking state of %d: %w", pid, err)
	}
	var s State
	if len(b) > 1<<16 || json.Unmarshal(b, &s) != nil || s.Pid != pid || s.Fd < MinFd {
		_ = Remove(pid)
		return nil, nil // damaged: not trusted
	}
	st, err := procfs.ReadStat(pid)
	if err != nil || st.StartTime != s.StartTime {
		_ = Remove(pid)
		return nil, nil // another process with the same pid
	}
	if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, s.Fd)); err != nil || link != "anon_inode:[userfaultfd]" {
		if s.Stray != nil && LoadStray(pid) >= 0 {
			return nil, nil // kept for the dump that closes the stray fd
		}
		_ = Remove(pid)
		return nil, nil // closed, or exec'd (the fd is close-on-exec)
	}
	return &s, nil
}

// LoadStray returns the fd number at which a killed Create left an
// injected userfaultfd in pid (see State.Stray), or -1: the state must
// name pid (same start time) and a Stray number, and the fd there must be
// a userfaultfd whose API was never set (its features read 0 in
// /proc/PID/fdinfo; Create sets them only after the move), so that a
// program's own userfaultfd is never taken for it. Call it before Load,
// which removes a state whose Fd was never made.
func LoadStray(pid int) int {
	b, err := readState(pid)
	if err != nil || len(b) > 1<<16 {
		return -1
	}
	var s State
	if json.Unmarshal(b, &s) != nil || s.Pid != pid || s.Stray == nil || *s.Stray < 0 {
		return -1
	}
	st, err := procfs.ReadStat(pid)
	if err != nil || st.StartTime != s.StartTime {
		return -1
	}
	n := *s.Stray
	if link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n)); err != nil || link != "anon_inode:[userfaultfd]" {
		return -1
	}
	info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, n))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(info), "\n") {
		// "API:\taa:FEATURES:IOCTLS"; FEATURES is 0 until UFFDIO_API.
		if v, ok := strings.CutPrefix(l, "API:"); ok {
			f := strings.Split(strings.TrimSpace(v), ":")
			if len(f) == 3 && f[1] == "0" {
				return n
			}
		}
	}
	return -1
}

// NewState returns the state of a freshly tracked process pid whose
// userfaultfd is fd fd in it, valid for no image yet.
func NewState(pid, fd int) (*State, error) {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return nil, err
	}
	return &State{Pid: pid, StartTime: st.StartTime, Fd: fd}, nil
}

// sweepOnce sweeps StateDir once per rtcr process, at its first Save.
var sweepOnce sync.Once

// Sweep removes the state files of processes that are gone (or whose pid
// names another process now, or whose userfaultfd was closed): a tracked
// process that exits leaves its file behind, and a series of short-lived
// processes would fill the directory. Temporary files of a Save killed
// midway are removed once they are a minute old.
func Sweep() {
	dir := stateDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			_, _ = Load(pid) // removes the file unless it is valid
			continue
		}
		if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && time.Since(info.ModTime()) > time.Minute {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Save writes s atomically (0600). The first Save of an rtcr process
// also sweeps the state of processes that are gone (Sweep).
func (s *State) Save() error {
	if err := os.MkdirAll(stateDir(), 0o700); err != nil {
		return fmt.Errorf("tracking state of %d: %w", s.Pid, err)
	}
	sweepOnce.Do(Sweep)
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(stateDir(), ".tmp-")
	if err != nil {
		return fmt.Errorf("tracking state of %d: %w", s.Pid, err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), statePath(s.Pid))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tracking state of %d: %w", s.Pid, err)
	}
	return nil
}

// Remove removes the state file of pid, if any.
func Remove(pid int) error {
	if err := os.Remove(statePath(pid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tracking state of %d: %w", pid, err)
	}
	return nil
}
