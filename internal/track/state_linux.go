package track

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rtcr/rtcr/internal/procfs"
)

// StateDir holds one state file per tracked process, named after its pid
// (mode 0600 in a 0700 directory: only root reads or writes them).
var StateDir = "/run/rtcr/track"

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
}

func statePath(pid int) string { return filepath.Join(StateDir, strconv.Itoa(pid)) }

// Load returns the tracking state of pid, or nil when it has none: no
// state file, a pid that now names another process (the file is removed),
// or a fd that is no longer a userfaultfd.
func Load(pid int) (*State, error) {
	b, err := os.ReadFile(statePath(pid))
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
		_ = Remove(pid)
		return nil, nil // closed, or exec'd (the fd is close-on-exec)
	}
	return &s, nil
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

// Save writes s atomically (0600).
func (s *State) Save() error {
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return fmt.Errorf("tracking state of %d: %w", s.Pid, err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(StateDir, ".tmp-")
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
