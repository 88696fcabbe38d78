package kcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// minMajor.minMinor is the oldest kernel rtcr supports.
const (
	minMajor = 6
	minMinor = 7
)

// Capability bits (include/uapi/linux/capability.h).
const (
	capSysPtrace         = 19
	capSysResource       = 24
	capCheckpointRestore = 40
)

// Yama's ptrace_scope sysctl and its value that disables ptrace entirely
// (Documentation/admin-guide/LSM/Yama.rst).
const (
	yamaPtraceScopeSysctl = "/proc/sys/kernel/yama/ptrace_scope"
	ptraceScopeNoAttach   = 3
)

// checkArch requires x86_64: rtcr's register and syscall handling is amd64 only.
func checkArch() (string, error) {
	if runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("%s: rtcr supports only amd64", runtime.GOARCH)
	}
	return "amd64", nil
}

// checkKernel requires kernel >= 6.7 (minMajor.minMinor).
func checkKernel() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	if err := checkRelease(rel); err != nil {
		return "", err
	}
	return rel, nil
}

// checkRelease reports whether the kernel release rel ("6.18.44-fc-v669")
// is at least minMajor.minMinor; the error names rel.
func checkRelease(rel string) error {
	major, minor, err := parseRelease(rel)
	if err != nil {
		return err
	}
	if major < minMajor || major == minMajor && minor < minMinor {
		return fmt.Errorf("%s: too old, need >= %d.%d", rel, minMajor, minMinor)
	}
	return nil
}

// parseRelease returns the major and minor numbers of a kernel release
// string such as "6.18.44-fc-v669", "5.15.0-91-generic" or "7.0".
func parseRelease(rel string) (major, minor int, err error) {
	fields := strings.SplitN(rel, ".", 3)
	if len(fields) < 2 {
		return 0, 0, fmt.Errorf("kernel release %q: no major.minor", rel)
	}
	major, err = strconv.Atoi(fields[0])
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: major: %w", rel, err)
	}
	// The minor number may be followed by "-suffix" when there is no patch level.
	m := fields[1]
	if i := strings.IndexFunc(m, func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		m = m[:i]
	}
	minor, err = strconv.Atoi(m)
	if err != nil {
		return 0, 0, fmt.Errorf("kernel release %q: minor: %w", rel, err)
	}
	return major, minor, nil
}

// effectiveCaps returns rtcr's effective capability set.
func effectiveCaps() (uint64, error) {
	st, err := procfs.ReadStatus(os.Getpid())
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return st.CapEff, nil
}

// checkCaps requires CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE.
func checkCaps() (string, error) {
	eff, err := effectiveCaps()
	if err != nil {
		return "", err
	}
	var missing []string
	if eff&(1<<capSysPtrace) == 0 {
		missing = append(missing, "CAP_SYS_PTRACE")
	}
	if eff&(1<<capCheckpointRestore) == 0 {
		missing = append(missing, "CAP_CHECKPOINT_RESTORE")
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("missing %s (CapEff %016x): run as root or grant them", strings.Join(missing, ", "), eff)
	}
	return fmt.Sprintf("present (CapEff %016x)", eff), nil
}

// checkSysResource reports CAP_SYS_RESOURCE, needed to restore rlimits
// above rtcr's own hard limits.
func checkSysResource() (string, error) {
	eff, err := effectiveCaps()
	if err != nil {
		return "", err
	}
	if eff&(1<<capSysResource) == 0 {
		return "", errors.New("missing: rlimits above rtcr's own hard limits cannot be restored")
	}
	return "present", nil
}

// checkPtraceScope fails when Yama forbids ptrace altogether.
func checkPtraceScope() (string, error) {
	data, err := os.ReadFile(yamaPtraceScopeSysctl)
	if errors.Is(err, os.ErrNotExist) {
		return "no Yama", nil
	}
	if err != nil {
		return "", fmt.Errorf("read ptrace_scope: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", yamaPtraceScopeSysctl, err)
	}
	if v == ptraceScopeNoAttach {
		return "", fmt.Errorf("ptrace_scope=%d: ptrace is disabled until reboot", v)
	}
	return fmt.Sprintf("ptrace_scope=%d", v), nil
}

// checkVMReadv reads a buffer of rtcr's own memory with process_vm_readv.
func checkVMReadv() (string, error) {
	src := []byte("rtcr process_vm_readv probe 0123456789")
	dst := make([]byte, len(src))
	local := []unix.Iovec{{Base: &dst[0]}}
	local[0].SetLen(len(dst))
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&src[0])), Len: len(src)}}
	n, err := unix.ProcessVMReadv(os.Getpid(), local, remote, 0)
	runtime.KeepAlive(src)
	if err != nil {
		return "", fmt.Errorf("process_vm_readv: %w", err)
	}
	if n != len(src) || !bytes.Equal(dst, src) {
		return "", fmt.Errorf("process_vm_readv read %d of %d bytes, content differs", n, len(src))
	}
	return fmt.Sprintf("read %d bytes of own memory", n), nil
}

// checkTimeNS requires time namespace support (/proc/self/ns/time).
func checkTimeNS() (string, error) {
	target, err := os.Readlink("/proc/self/ns/time")
	if err != nil {
		return "", fmt.Errorf("no time namespaces: %w", err)
	}
	return "present (" + target + ")", nil
}
