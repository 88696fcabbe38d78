package tree

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/rtcr/rtcr/internal/procfs"
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
	// own are rtcr's threads when the scan began: the threads its Go
	// runtime creates meanwhile (a tracer thread, an idle one) count in
	// the fork count too, and are allowed for.
	own map[int]bool
	// broken: a process the walk reached was a zombie or gone.
	broken bool
}

// preScanTries counts the freezes, preScanMisses the scans found no
// longer valid in a row.
var preScanTries, preScanMisses atomic.Int64

// used records whether the scan was valid when the freeze ended.
func (p *preScan) used(ok bool) {
	if p == nil {
		return
	}
	if ok {
		preScanMisses.Store(0)
	} else {
		preScanMisses.Add(1)
	}
}

// newPreScan scans /proc for the children of every process, or returns
// nil when the scan is not needed (the kernel has the children files) or
// failed (Freeze then scans while frozen, as without it).
func newPreScan() *preScan {
	if haveTaskChildren() {
		return nil
	}
	// On a machine that forks all the time the scan is never valid by
	// the time the tree is frozen: after 3 misses in a row it is tried
	// only at every 8th freeze.
	if n := preScanTries.Add(1); preScanMisses.Load() >= 3 && n%8 != 0 {
		return nil
	}
	own, err := ownThreads()
	if err != nil {
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
	return &preScan{children: m, forks: forks, own: own}
}

// ownThreads returns the threads of rtcr.
func ownThreads() (map[int]bool, error) {
	tids, err := procfs.ListTasks(os.Getpid())
	if err != nil {
		return nil, err
	}
	own := make(map[int]bool, len(tids))
	for _, t := range tids {
		own[t] = true
	}
	return own, nil
}

// valid reports whether the scan still holds: no task was created since
// it started but rtcr's own threads (every one of them is still there),
// and no process of the tree was found gone.
func (p *preScan) valid() bool {
	if p == nil || p.broken {
		return false
	}
	before, err := ownThreads()
	if err != nil {
		return false
	}
	n, err := readForks()
	if err != nil || n < p.forks {
		return false
	}
	if n == p.forks {
		return true
	}
	// rtcr's threads before and after the count are the same: each
	// one it created since the scan is counted in n.
	after, err := ownThreads()
	if err != nil || len(after) != len(before) {
		return false
	}
	var created uint64
	for t := range after {
		if !before[t] {
			return false
		}
		if !p.own[t] {
			created++
		}
	}
	return created == n-p.forks
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
