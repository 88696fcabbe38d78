package attr

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrUnsupported marks state the dump sees but a restore could not bring
// back the same: the dump refuses it, naming it.
var ErrUnsupported = errors.New("not supported yet")

// kcmpFS is KCMP_FS (include/uapi/linux/kcmp.h).
const kcmpFS = 3

// CheckTree refuses, before anything is injected, the per-process and
// per-thread state of the frozen processes live (tids: the threads of
// each) that restore cannot bring back: threads or processes sharing
// filesystem information other than a process's own threads (CLONE_FS),
// a thread in other cgroups than its process, a security label (LSM)
// other than rtcr's. A thread's speculation control is checked with its
// credentials (CheckSpeculation), where its status is read anyway. It
// reads two small files per thread (cgroup, and the label when an LSM
// gives rtcr one): every read is freeze time.
func CheckTree(live []int, tids map[int][]int) error {
	if err := checkSharedFS(live, tids); err != nil {
		return err
	}
	own, lsm, err := readLabel("self")
	if err != nil {
		return err
	}
	for _, pid := range live {
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			return fmt.Errorf("cgroups of %d: %w", pid, err)
		}
		// Finding out costs a read of mountinfo and cgroup.type: worth it
		// from three threads on.
		perThread := len(tids[pid]) < 3 || threadCgroups(cg)
		for _, tid := range tids[pid] {
			where := fmt.Sprintf("%d/task/%d", pid, tid)
			if tid != pid && perThread {
				tcg, err := os.ReadFile("/proc/" + where + "/cgroup")
				if err != nil {
					return fmt.Errorf("cgroups of thread %d of %d: %w", tid, pid, err)
				}
				if string(tcg) != string(cg) {
					return fmt.Errorf("thread %d of %d is in other cgroups (%s) than its process (%s): %w",
						tid, pid, oneLine(tcg), oneLine(cg), ErrUnsupported)
				}
			}
			if !lsm {
				continue
			}
			label, _, err := readLabel(where)
			if err != nil {
				return err
			}
			if label != own {
				return fmt.Errorf("thread %d of %d has the security label %q, rtcr %q (a restored process gets rtcr's): %w",
					tid, pid, label, own, ErrUnsupported)
			}
		}
	}
	return nil
}

// threadCgroups reports whether the threads of a process whose
// /proc/PID/cgroup is cg may be in other cgroups than it: always with a
// cgroup v1 hierarchy (its tasks files place threads), with cgroup v2
// only when the process's cgroup is threaded (cgroup.type not "domain").
// A check that fails says they may.
func threadCgroups(cg []byte) bool {
	path, ok := strings.CutPrefix(strings.TrimSuffix(string(cg), "\n"), "0::")
	if !ok || strings.Contains(path, "\n") {
		return true
	}
	dir, err := cgroupDir(image.Cgroup{Path: path})
	if err != nil {
		return true
	}
	typ, err := os.ReadFile(dir + "/cgroup.type")
	return err != nil || strings.TrimSpace(string(typ)) != "domain"
}

// sudConfig is struct ptrace_sud_config (include/uapi/linux/ptrace.h).
type sudConfig struct {
	Mode, Selector, Offset, Len uint64
}

// CheckThreads refuses, before anything is injected, a thread of pid
// (tids) with syscall user dispatch on (checkDispatch). It makes ptrace
// requests: call it on the process's tracer thread.
func CheckThreads(pid int, tids []int) error {
	for _, tid := range tids {
		if err := checkDispatch(pid, tid); err != nil {
			return err
		}
	}
	return nil
}

// checkDispatch refuses thread tid of pid if it turned syscall user
// dispatch on (prctl(PR_SET_SYSCALL_USER_DISPATCH), Wine does): its system
// calls outside the allowed range may be turned into SIGSYS, the calls
// rtcr injects too, and rtcr does not set it again. Read from outside with
// PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG (the thread is frozen); a kernel
// without it (EIO, EINVAL) has none.
func checkDispatch(pid, tid int) error {
	var c sudConfig
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, uintptr(tid),
		unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)), 0, 0)
	switch {
	case errno == unix.EIO || errno == unix.EINVAL:
		return nil
	case errno != 0:
		return fmt.Errorf("syscall user dispatch of thread %d of %d: %w", tid, pid, errno)
	case c.Mode != 0:
		return fmt.Errorf("thread %d of %d has syscall user dispatch on (PR_SET_SYSCALL_USER_DISPATCH, range %#x+%#x, selector at %#x): %w",
			tid, pid, c.Offset, c.Len, c.Selector, ErrUnsupported)
	}
	return nil
}

// CheckSpeculation refuses thread tid of pid, whose status st was read,
// if it set its own speculation control (see checkSpeculation), or if its
// process enabled linear address masking (arch_prctl(ARCH_ENABLE_TAGGED_ADDR):
// untag_mask not all ones), which rtcr does not enable again (untested:
// this CPU has no LAM).
func CheckSpeculation(pid, tid int, st *procfs.Status) error {
	if err := checkSpeculation(st); err != nil {
		return fmt.Errorf("thread %d of %d: %w", tid, pid, err)
	}
	if st.UntagMask != "" && st.UntagMask != "0xffffffffffffffff" {
		return fmt.Errorf("process %d: linear address masking enabled (untag_mask %s, ARCH_ENABLE_TAGGED_ADDR): %w", pid, st.UntagMask, ErrUnsupported)
	}
	return nil
}

// checkSpeculation refuses a thread whose speculation control was set with
// PR_SET_SPECULATION_CTRL (or by seccomp): the status lines say "thread
// mitigated", "thread force mitigated", "conditional disabled" …, where
// the defaults are "thread vulnerable", "conditional enabled" or a
// system-wide mode. rtcr does not set them again.
func checkSpeculation(st *procfs.Status) error {
	for _, s := range [][2]string{
		{"Speculation_Store_Bypass", st.SpecStoreBypass},
		{"SpeculationIndirectBranch", st.SpecIndirectBranch},
	} {
		switch s[1] {
		case "thread mitigated", "thread force mitigated", "conditional disabled", "conditional force disabled":
			return fmt.Errorf("speculation control %s: %s (PR_SET_SPECULATION_CTRL): %w", s[0], s[1], ErrUnsupported)
		}
	}
	return nil
}

// readLabel reads /proc/WHERE/attr/current: "" when it is unconfined;
// lsm is false when no LSM provides one (EINVAL).
func readLabel(where string) (label string, lsm bool, err error) {
	data, err := os.ReadFile("/proc/" + where + "/attr/current")
	if errors.Is(err, unix.EINVAL) || errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("security label of %s: %w", where, err)
	}
	label = strings.TrimRight(string(data), "\x00\n")
	if label == "unconfined" {
		return "", true, nil
	}
	return label, true, nil
}

// checkSharedFS refuses threads that do not share their process's
// filesystem information (a thread that called unshare(CLONE_FS)) and
// processes that share it (clone with CLONE_FS): restore gives every
// process its own, shared by its threads. Processes are sorted by
// kcmp(KCMP_FS), which orders the kernel objects, so that sharing ones
// end up next to each other.
func checkSharedFS(live []int, tids map[int][]int) error {
	var kerr error
	cmp := func(a, b int) int {
		v, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpFS, 0, 0, 0)
		if errno != 0 {
			if kerr == nil {
				kerr = fmt.Errorf("kcmp(%d, %d, KCMP_FS): %w", a, b, errno)
			}
			return 0
		}
		switch v {
		case 0:
			return 0
		case 1:
			return -1
		default:
			return 1
		}
	}
	for _, pid := range live {
		for _, tid := range tids[pid] {
			if tid != pid && cmp(pid, tid) != 0 {
				if kerr != nil {
					return kerr
				}
				return fmt.Errorf("thread %d of %d has filesystem information (cwd, root, umask) of its own (unshare(CLONE_FS)): %w",
					tid, pid, ErrUnsupported)
			}
		}
	}
	sorted := slices.Clone(live)
	slices.SortFunc(sorted, cmp)
	if kerr != nil {
		return kerr
	}
	for i := 1; i < len(sorted); i++ {
		if cmp(sorted[i-1], sorted[i]) == 0 {
			if kerr != nil {
				return kerr
			}
			a, b := min(sorted[i-1], sorted[i]), max(sorted[i-1], sorted[i])
			return fmt.Errorf("processes %d and %d share their filesystem information (cwd, root, umask: CLONE_FS): %w",
				a, b, ErrUnsupported)
		}
	}
	return nil
}

// oneLine joins the lines of a /proc file with "; " for a message.
func oneLine(data []byte) string {
	return strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "; ")
}
