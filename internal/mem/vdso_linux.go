package mem

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// ErrOtherKernel reports an image whose vdso differs from this kernel's.
var ErrOtherKernel = errors.New("image was taken on a different kernel")

// OwnVDSO returns the address and bytes of rtcr's own [vdso], which on one
// kernel are the bytes every process has. They are read once.
func OwnVDSO() (uint64, []byte, error) {
	ownOnce.Do(func() { ownAddr, ownBytes, ownErr = readOwnVDSO() })
	return ownAddr, ownBytes, ownErr
}

var (
	ownOnce  sync.Once
	ownAddr  uint64
	ownBytes []byte
	ownErr   error
)

func readOwnVDSO() (uint64, []byte, error) {
	maps, err := procfs.ReadMaps(os.Getpid())
	if err != nil {
		return 0, nil, err
	}
	for _, m := range maps {
		if m.Path == "[vdso]" {
			b := make([]byte, m.Size())
			if err := ptrace.ReadMem(os.Getpid(), m.Start, b); err != nil {
				return 0, nil, err
			}
			return m.Start, b, nil
		}
	}
	return 0, nil, errors.New("no [vdso] in /proc/self/maps")
}

// CheckVDSO verifies that this kernel provides the vdso the image's code
// was running against.
func CheckVDSO(p *image.Process) error {
	if p.VDSO == nil {
		return nil
	}
	_, own, err := OwnVDSO()
	if err != nil {
		return fmt.Errorf("check vdso: %w", err)
	}
	if !bytes.Equal(own, p.VDSO) {
		return fmt.Errorf("process %d: vdso differs from this kernel's (%d bytes, image has %d): %w", p.Pid, len(own), len(p.VDSO), ErrOtherKernel)
	}
	return nil
}

// SyscallOffset returns the offset of a `syscall` instruction (0f 05) in
// the vdso; rtcr injects system calls through it.
func SyscallOffset(vdso []byte) (int, error) {
	i := bytes.Index(vdso, []byte{0x0f, 0x05})
	if i < 0 {
		return 0, errors.New("no syscall instruction in the vdso")
	}
	return i, nil
}

// VDSOStart returns the start of the image's [vdso] mapping, 0 if none.
func VDSOStart(p *image.Process) uint64 {
	for _, v := range p.VMAs {
		if v.Kind == image.KindVDSO {
			return v.Start
		}
	}
	return 0
}

// mapVDSO asks the kernel to map vvar, vvar_vclock and vdso at the image's
// addresses (arch_prctl ARCH_MAP_VDSO_64 with the start of the first) and
// checks the result has the image's layout.
func mapVDSO(r *ptrace.Remote, p *image.Process) error {
	var want []image.VMA
	for _, v := range p.VMAs {
		if isVDSOKind(v.Kind) {
			want = append(want, v)
		}
	}
	if len(want) == 0 {
		return nil
	}
	if _, err := r.Syscall(unix.SYS_ARCH_PRCTL, abi.ARCH_MAP_VDSO_64, want[0].Start); err != nil {
		return fmt.Errorf("map vdso of %d at %#x: %w", r.Pid, want[0].Start, err)
	}
	maps, err := procfs.ReadMaps(r.Pid)
	if err != nil {
		return err
	}
	for _, w := range want {
		found := false
		for _, m := range maps {
			if m.Path == w.Name && m.Start == w.Start && m.End == w.End {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("map vdso of %d: %s not at %#x-%#x after arch_prctl: %w", r.Pid, w.Name, w.Start, w.End, ErrOtherKernel)
		}
	}
	return nil
}

// unsafeSlice returns the bytes an Iovec points to.
func unsafeSlice(iov unix.Iovec) []byte {
	return unsafe.Slice(iov.Base, iov.Len)
}

// SyscallAddr returns the address of a `syscall` instruction in the vdso
// of process pid, through which rtcr injects calls into it, or, for a
// process that unmapped its vdso, in its executable memory (see
// FindSyscall).
func SyscallAddr(pid int) (uint64, error) {
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return 0, err
	}
	for _, m := range maps {
		if m.Path != "[vdso]" {
			continue
		}
		_, own, err := OwnVDSO()
		if err != nil {
			return 0, err
		}
		off, err := SyscallOffset(own)
		if err != nil {
			return 0, err
		}
		return m.Start + uint64(off), nil
	}
	return FindSyscall(pid, 0, 0)
}

// maxSyscallScan bounds the bytes of executable memory FindSyscall reads.
const maxSyscallScan = 64 << 20

// FindSyscall returns the address of the bytes of a `syscall` instruction
// (0f 05) in an executable mapping of process pid (any such bytes will do:
// the injected call jumps to them and stops right after), for a process
// without a vdso. A program without a vdso has them in its libc or its
// own code; one with none is refused. The range skipStart-skipEnd (rtcr's
// scratch area in a stub, about to go) is not looked at.
func FindSyscall(pid int, skipStart, skipEnd uint64) (uint64, error) {
	maps, err := procfs.ReadMaps(pid)
	if err != nil {
		return 0, err
	}
	read := 0
	for _, m := range maps {
		if !m.Exec || !m.Read || m.Path == "[vsyscall]" || (m.Start < skipEnd && skipStart < m.End) {
			continue
		}
		const chunk = 1 << 20
		for start := m.Start; start < m.End && read < maxSyscallScan; start += chunk {
			b := make([]byte, min(chunk+1, m.End-start)) // +1: an instruction across chunks
			if err := ptrace.ReadMem(pid, start, b); err != nil {
				break // not readable: try the next mapping
			}
			read += len(b)
			if i := bytes.Index(b, []byte{0x0f, 0x05}); i >= 0 {
				return start + uint64(i), nil
			}
		}
	}
	return 0, fmt.Errorf("process %d has no [vdso] and no syscall instruction in its executable memory: %w", pid, ErrUnsupported)
}

// OpenRemote prepares injection into the stopped leader of process pid,
// through the syscall instruction of its vdso (see ptrace.OpenRemote).
func OpenRemote(pid int) (*ptrace.Remote, error) {
	addr, err := SyscallAddr(pid)
	if err != nil {
		return nil, err
	}
	return ptrace.OpenRemote(pid, addr)
}

// OpenLive prepares injection into the stopped leader of the live process
// pid so that rtcr may be killed at any moment without harming it (see
// ptrace.OpenLive).
func OpenLive(pid int) (*ptrace.Remote, error) {
	addr, err := SyscallAddr(pid)
	if err != nil {
		return nil, err
	}
	return ptrace.OpenLive(pid, addr)
}

// OpenLiveThreads is OpenLive with room to inject into up to threads other
// threads of the process at once (ptrace.OpenLiveThreads).
func OpenLiveThreads(pid, threads int) (*ptrace.Remote, error) {
	addr, err := SyscallAddr(pid)
	if err != nil {
		return nil, err
	}
	return ptrace.OpenLiveThreads(pid, addr, threads)
}
