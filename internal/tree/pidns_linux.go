package tree

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/rtcr/rtcr/internal/procfs"
)

// nsDepth returns how many pid namespaces deep pid is, as seen from /proc.
func nsDepth(pid int) (int, []int, error) {
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		return 0, nil, err
	}
	if len(st.NSpid) == 0 {
		return 0, nil, fmt.Errorf("process %d: no NSpid in /proc/%d/status", pid, pid)
	}
	return len(st.NSpid), st.NSpid, nil
}

// Root finds the root of the tree to checkpoint for pid. When pid lives in
// a deeper pid namespace than rtcr (a program started by `rtcr run`), or
// is an `rtcr run` whose child is the init of such a namespace, the root
// is that namespace's init and nested is true; otherwise it is pid.
// A thread id that is not its process's pid is refused (ErrThread): the
// process would be dumped with the thread's id.
func Root(pid int) (root int, nested bool, err error) {
	st, err := procfs.ReadStatus(pid)
	if err != nil {
		return 0, false, fmt.Errorf("process %d: %w", pid, err)
	}
	if st.Tgid != pid {
		return 0, false, fmt.Errorf("%d is a thread of process %d (its tgid): give --pid %d: %w", pid, st.Tgid, st.Tgid, ErrThread)
	}
	own, _, err := nsDepth(os.Getpid())
	if err != nil {
		return 0, false, err
	}
	depth, ids, err := nsDepth(pid)
	if err != nil {
		return 0, false, fmt.Errorf("process %d: %w", pid, err)
	}
	if depth > own {
		// Walk up to the process that is pid 1 of pid's namespace.
		for ids[len(ids)-1] != 1 {
			st, err := procfs.ReadStat(pid)
			if err != nil {
				return 0, false, err
			}
			pid = st.Ppid
			if _, ids, err = nsDepth(pid); err != nil {
				return 0, false, err
			}
		}
		return pid, true, nil
	}
	// pid runs, but an `rtcr run` forks nothing after its init: its
	// list of children is stable, as StoppedChildren wants.
	m, err := StoppedChildren([]int{pid})
	if err != nil {
		return 0, false, err
	}
	for _, c := range m[pid] {
		if d, ids, err := nsDepth(c); err == nil && d == own+1 && ids[len(ids)-1] == 1 {
			return c, true, nil // pid is an `rtcr run`; c its init
		}
	}
	return pid, false, nil
}

// InnerID returns the id of thread or process id inside its own pid
// namespace (the last NSpid entry).
func InnerID(pid, tid int) (int, error) {
	st, err := procfs.ReadTaskStatus(pid, tid)
	if err != nil {
		return 0, err
	}
	if len(st.NSpid) == 0 {
		return 0, fmt.Errorf("thread %d of %d: no NSpid", tid, pid)
	}
	return st.NSpid[len(st.NSpid)-1], nil
}

// Name names process pid (as rtcr sees it) in messages: "3006", or, for a
// process of a nested pid namespace (an `rtcr run` tree), its pid there
// first, as its programs and the image know it: "pid 2 (host 3006)".
func Name(pid int, nested bool) string {
	if nested {
		if inner, err := InnerID(pid, pid); err == nil {
			return NSName(inner, pid)
		}
	}
	return strconv.Itoa(pid)
}

// NSName names a process of a nested pid namespace whose pid there is
// inner and whose pid as rtcr sees it is host: "pid 2 (host 3006)".
func NSName(inner, host int) string {
	return fmt.Sprintf("pid %d (host %d)", inner, host)
}

// ErrThread reports a thread id given where a process id is wanted.
var ErrThread = errors.New("a thread, not a process")

// ErrUnsupported reports a tree rtcr cannot checkpoint yet.
var ErrUnsupported = errors.New("not supported yet")

// CheckNamespaces refuses a process of pids that lives in other
// namespaces than rtcr's: paths, addresses and ids would mean something
// else on restore. nested allows the pid and time namespaces of an
// `rtcr run` tree. rtcr's own namespaces are read once for all pids.
func CheckNamespaces(pids []int, nested bool) error {
	kinds := []string{"mnt", "net", "user", "ipc", "uts", "cgroup"}
	if !nested {
		kinds = append(kinds, "pid", "time")
	}
	own := map[string]string{}
	for _, k := range kinds {
		ns, err := os.Readlink("/proc/self/ns/" + k)
		if err != nil {
			continue // a namespace kind this kernel lacks
		}
		own[k] = ns
	}
	for _, pid := range pids {
		for _, k := range kinds {
			if own[k] == "" {
				continue
			}
			its, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + k)
			if err != nil {
				return fmt.Errorf("process %d: %w", pid, err)
			}
			if its != own[k] {
				return fmt.Errorf("process %d is in another %s namespace (%s, rtcr is in %s): %w", pid, k, its, own[k], ErrUnsupported)
			}
		}
	}
	return nil
}
