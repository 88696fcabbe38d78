package kcheck

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// Addresses the probe's restore stub uses: its scratch area, its ELF just
// above, and where it asks the kernel to map the vdso.
const (
	stubScratch = 0x100000000
	stubELFBase = stubScratch + ptrace.ScratchSize + 4096
	stubVDSO    = 0x200000000
)

// stubAttempts is how often the probe picks another free pid when the one
// it chose was taken in the meantime.
const stubAttempts = 3

// stubProbes starts a restore stub with a chosen pid (memfd exec, ptrace
// injection, clone3 with set_tid) and, inside it, tests
// arch_prctl(ARCH_MAP_VDSO_64) and prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE).
// It returns three Results; if the stub cannot start, all three fail.
func stubProbes() []Result {
	rs := []Result{
		{Feature: featStub, Required: true},
		{Feature: featVDSO, Required: true},
		{Feature: featMMMap, Required: true},
	}
	err := ptrace.Run(func() error {
		r, err := startStub()
		if err != nil {
			return err
		}
		defer ptrace.Kill(r.Pid)
		rs[0].OK, rs[0].Detail = true, fmt.Sprintf("stub created with pid %d", r.Pid)
		rs[1].Detail, rs[1].OK = outcome(checkMapVDSO(r))
		rs[2].Detail, rs[2].OK = outcome(checkMMMapSize(r))
		return nil
	})
	if err != nil {
		for i := range rs {
			if rs[i].Detail == "" {
				rs[i].Detail = err.Error()
			}
		}
	}
	return rs
}

// outcome turns a check's results into a Result's Detail and OK.
func outcome(detail string, err error) (string, bool) {
	if err != nil {
		return err.Error(), false
	}
	return detail, true
}

// startStub starts a stub with a free pid, retrying with another pid if
// the chosen one was taken before clone3 ran. It must run inside ptrace.Run.
func startStub() (*ptrace.Remote, error) {
	var err error
	for range stubAttempts {
		var pid int
		pid, err = freePid()
		if err != nil {
			return nil, err
		}
		var r *ptrace.Remote
		r, err = stub.Start(pid, stubScratch, stubELFBase)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, stub.ErrPidTaken) {
			break
		}
	}
	return nil, fmt.Errorf("start restore stub: %w", err)
}

// freePid returns the highest pid below pid_max that has no /proc entry.
func freePid() (int, error) {
	data, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0, fmt.Errorf("read pid_max: %w", err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("parse pid_max: %w", err)
	}
	for pid := pidMax - 1; pid > 1; pid-- {
		_, err := os.Lstat("/proc/" + strconv.Itoa(pid))
		if errors.Is(err, os.ErrNotExist) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no free pid below pid_max %d", pidMax)
}

// checkMapVDSO maps the vdso into the (emptied) stub at stubVDSO and checks
// that /proc/PID/maps shows it there.
func checkMapVDSO(r *ptrace.Remote) (string, error) {
	if _, err := r.Syscall(unix.SYS_ARCH_PRCTL, abi.ARCH_MAP_VDSO_64, stubVDSO); err != nil {
		return "", fmt.Errorf("arch_prctl(ARCH_MAP_VDSO_64, %#x): %w", stubVDSO, err)
	}
	maps, err := procfs.ReadMaps(r.Pid)
	if err != nil {
		return "", err
	}
	for _, m := range maps {
		if m.Path == "[vdso]" && m.Start >= stubVDSO {
			return fmt.Sprintf("[vdso] mapped at %#x-%#x", m.Start, m.End), nil
		}
	}
	return "", fmt.Errorf("arch_prctl(ARCH_MAP_VDSO_64, %#x) succeeded but no [vdso] at or above it", stubVDSO)
}

// checkMMMapSize asks the kernel for the size of struct prctl_mm_map
// (PR_SET_MM_MAP_SIZE, available with CONFIG_CHECKPOINT_RESTORE) and
// compares it with abi.PrctlMMMap.
func checkMMMapSize(r *ptrace.Remote) (string, error) {
	var size uint32
	addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&size))
	if err != nil {
		return "", err
	}
	if _, err := r.Syscall(unix.SYS_PRCTL, abi.PR_SET_MM, abi.PR_SET_MM_MAP_SIZE, addr, 0, 0); err != nil {
		return "", fmt.Errorf("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE): %w", err)
	}
	if err := r.Get(ptrace.ArgOff, ptrace.Bytes(&size)); err != nil {
		return "", err
	}
	want := unsafe.Sizeof(abi.PrctlMMMap{})
	if uintptr(size) != want {
		return "", fmt.Errorf("kernel's struct prctl_mm_map is %d bytes, rtcr's is %d", size, want)
	}
	return fmt.Sprintf("struct prctl_mm_map is %d bytes, as rtcr expects", size), nil
}
