package tree

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// preScan is the children of every process, read by a scan of /proc while
// the tree still runs, so that a kernel without
// /proc/PID/task/TID/children does not scan every process on the machine
// while the tree is frozen (30–60 ms with ~400 processes here). It stays
// valid as long as no task was created anywhere on the machine since
// (the kernel's fork count in /proc/stat, which every clone increments,
// threads and clone3 with set_tid included, whatever the pid namespace)
// and no process it lists in the tree has exited (which would reparent
// its children, to a subreaper of the tree for instance). Freeze checks
// both once the tree is frozen and scans again, frozen, otherwise.
type preScan struct {
	children map[int][]int
	forks    uint64
	// broken: a process the walk reached was a zombie or gone.
	broken bool
}

// newPreScan scans /proc for the children of every process, or returns
// nil when the scan is not needed (the kernel has the children files) or
// failed (Freeze then scans while frozen, as without it).
func newPreScan() *preScan {
	if haveTaskChildren() {
		return nil
	}
	forks, err := readForks()
	if err != nil {
		return nil
	}
	m, err := ChildMap()
	if err != nil {
		return nil
	}
	return &preScan{children: m, forks: forks}
}

// valid reports whether the scan still holds: no task was created since
// it started, and no process of the tree was found gone.
func (p *preScan) valid() bool {
	if p == nil || p.broken {
		return false
	}
	n, err := readForks()
	return err == nil && n == p.forks
}

// readForks returns the number of tasks created since boot: the
// "processes" line of /proc/stat.
func readForks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseForks(b)
}

// parseForks finds the "processes" line in the contents of /proc/stat.
func parseForks(b []byte) (uint64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("processes "))
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: processes line %q: %w", line, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc/stat: no processes line")
}
