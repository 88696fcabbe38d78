package attr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// prSetMemoryMerge is PR_SET_MEMORY_MERGE (include/uapi/linux/prctl.h).
const prSetMemoryMerge = 67

// dumpMMAttrs reads, from outside, the process-wide attributes of pid's
// memory and its cgroups: /proc/PID/coredump_filter, the KSM merge-any
// flag (ksm_merge_any in /proc/PID/ksm_stat, absent without CONFIG_KSM)
// and the cgroups that are not rtcr's own.
func dumpMMAttrs(pid int, p *image.Process) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/coredump_filter", pid))
	if err != nil {
		return fmt.Errorf("coredump_filter of %d: %w", pid, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 16, 32)
	if err != nil {
		return fmt.Errorf("coredump_filter of %d: %w", pid, err)
	}
	filter := uint32(v)
	p.CoredumpFilter = &filter
	data, err = os.ReadFile(fmt.Sprintf("/proc/%d/ksm_stat", pid))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ksm_stat of %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ksm_merge_any: "); ok {
			p.KSMMergeAny = v == "yes"
		}
	}
	if p.Cgroups, err = dumpCgroups(pid); err != nil {
		return err
	}
	return dumpLoginUID(pid, p)
}

// dumpLoginUID records the audit login uid of pid when it is not rtcr's
// own (a kernel without audit has no loginuid file: nothing to record).
func dumpLoginUID(pid int, p *image.Process) error {
	theirs, err := readLoginUID(strconv.Itoa(pid))
	if err != nil || theirs == nil {
		return err
	}
	own, err := readLoginUID("self")
	if err != nil {
		return err
	}
	if own == nil || *own != *theirs {
		p.LoginUID = theirs
	}
	return nil
}

// readLoginUID reads /proc/WHO/loginuid; nil without audit.
func readLoginUID(who string) (*uint32, error) {
	data, err := os.ReadFile("/proc/" + who + "/loginuid")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loginuid of %s: %w", who, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("loginuid of %s: %w", who, err)
	}
	u := uint32(v)
	return &u, nil
}

// restoreLoginUID sets the audit login uid of the stub r, when it differs,
// by writing /proc/self/loginuid from inside its main thread: the kernel
// lets only the process itself write it (with CAP_AUDIT_CONTROL once it is
// set). Its threads, created after, inherit it.
func restoreLoginUID(r *ptrace.Remote, want uint32) error {
	cur, err := readLoginUID(strconv.Itoa(r.Pid))
	if err != nil {
		return err
	}
	if cur == nil {
		return fmt.Errorf("restore loginuid %d of %d: this kernel has no audit login uid: %w", want, r.Pid, unix.ENOENT)
	}
	if *cur == want {
		return nil
	}
	path, err := r.PutString(ptrace.ArgOff, "/proc/self/loginuid")
	if err != nil {
		return err
	}
	fd, err := r.Syscall(unix.SYS_OPEN, path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("restore loginuid %d of %d: open /proc/self/loginuid: %w", want, r.Pid, err)
	}
	val := strconv.FormatUint(uint64(want), 10)
	buf, err := r.PutString(ptrace.ArgOff+64, val)
	if err == nil {
		_, err = r.Syscall(unix.SYS_WRITE, fd, buf, uint64(len(val)))
	}
	if _, cerr := r.Syscall(unix.SYS_CLOSE, fd); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore loginuid %d of %d: %w", want, r.Pid, err)
	}
	return nil
}

// restoreMMAttrs sets the core dump filter of the stub r (through /proc,
// when it differs from the one the stub inherited) and its KSM merge-any
// flag (injected prctl). The cgroups are RestoreCgroups', earlier.
func restoreMMAttrs(r *ptrace.Remote, p *image.Process) error {
	if p.CoredumpFilter != nil {
		path := fmt.Sprintf("/proc/%d/coredump_filter", r.Pid)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("coredump_filter of %d: %w", r.Pid, err)
		}
		cur, err := strconv.ParseUint(strings.TrimSpace(string(data)), 16, 32)
		if err != nil {
			return fmt.Errorf("coredump_filter of %d: %w", r.Pid, err)
		}
		if uint32(cur) != *p.CoredumpFilter {
			if err := os.WriteFile(path, []byte(fmt.Sprintf("%#x", *p.CoredumpFilter)), 0); err != nil {
				return fmt.Errorf("restore coredump_filter %#x of %d: %w", *p.CoredumpFilter, r.Pid, err)
			}
		}
	}
	if p.LoginUID != nil {
		if err := restoreLoginUID(r, *p.LoginUID); err != nil {
			return err
		}
	}
	if p.KSMMergeAny {
		if _, err := r.Syscall(unix.SYS_PRCTL, prSetMemoryMerge, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("restore prctl(PR_SET_MEMORY_MERGE, 1) of %d: %w", r.Pid, err)
		}
	}
	return nil
}
