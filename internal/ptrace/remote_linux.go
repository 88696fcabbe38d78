package ptrace

import (
	"bytes"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Remote is a stopped process rtcr works inside: an Injector on one of its
// threads plus a scratch area in its address space for the arguments of
// injected calls (paths, structures).
type Remote struct {
	*Injector
	// Pid is the process's pid as rtcr sees it (for ptrace and /proc);
	// NsPid is the pid the process sees itself, in its own pid namespace
	// (for calls injected into it that take a pid).
	Pid, NsPid  int
	Scratch     uint64
	ScratchSize int
	// WindowCalls counts the calls of a live injection that ran unprotected
	// (see OpenLive); 0 when rtcr could have been killed at any moment
	// without harm to the process.
	WindowCalls int

	gadget      Gadget // live: the sigreturn gadget
	stackFrame  uint64 // live: where the leader's frame sits on its stack at open and close
	vdsoSyscall uint64 // live: the syscall instruction for unprotected calls

	// Batches (batch_linux.go).
	exec           bool   // the scratch area is executable: batches can run as one
	sequential     bool   // Sequential was called
	codeWritten    bool   // the batch code is in the scratch area
	dispRead       bool   // sigIgn and sigCgt are read
	sigIgn, sigCgt uint64 // the process's ignored and caught signals
	batched        int    // batches run as one round trip
	slots          int    // thread slots above ScratchSize (threads_linux.go)
}

// ScratchSize is the size of the scratch area rtcr maps into a tracee.
const ScratchSize = 64 << 10

// Put writes data at offset off of the scratch area and returns its address.
func (r *Remote) Put(off int, data []byte) (uint64, error) {
	if off < 0 || off+len(data) > r.ScratchSize {
		return 0, fmt.Errorf("scratch area of %d: %d bytes at offset %d do not fit", r.Pid, len(data), off)
	}
	addr := r.Scratch + uint64(off)
	return addr, WriteMem(r.Pid, addr, data)
}

// Get reads len(buf) bytes at offset off of the scratch area.
func (r *Remote) Get(off int, buf []byte) error {
	if off < 0 || off+len(buf) > r.ScratchSize {
		return fmt.Errorf("scratch area of %d: %d bytes at offset %d out of range", r.Pid, len(buf), off)
	}
	return ReadMem(r.Pid, r.Scratch+uint64(off), buf)
}

// PutString writes s NUL-terminated at offset off of the scratch area.
func (r *Remote) PutString(off int, s string) (uint64, error) {
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		return 0, fmt.Errorf("path %q contains a NUL byte", s)
	}
	return r.Put(off, append([]byte(s), 0))
}

// Bytes returns the raw bytes of a fixed-size value, for Put.
func Bytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// OpenAt opens path inside the tracee and returns the new fd.
func (r *Remote) OpenAt(path string, flags int, mode uint32) (int, error) {
	p, err := r.PutString(pathOff, path)
	if err != nil {
		return -1, err
	}
	fd, err := r.Syscall(unix.SYS_OPENAT, atFDCWD, p, uint64(flags), uint64(mode))
	if err != nil {
		return -1, fmt.Errorf("open %s in %d: %w", path, r.Pid, err)
	}
	return int(fd), nil
}

// Close closes fd inside the tracee.
func (r *Remote) Close(fd int) error {
	if _, err := r.Syscall(unix.SYS_CLOSE, uint64(fd)); err != nil {
		return fmt.Errorf("close fd %d in %d: %w", fd, r.Pid, err)
	}
	return nil
}

// atFDCWD is AT_FDCWD (-100) as a register value.
const atFDCWD = ^uint64(99)

// Scratch layout: small structures first, a path buffer, then free space.
const (
	// ArgOff is where callers put a syscall's structure arguments.
	ArgOff = 0x100
	// pathOff is where OpenAt and friends put path names (up to 4 KiB).
	pathOff = 0x1000
	// DataOff is the start of the free area for larger data (auxv …).
	DataOff = 0x2000
)

// OpenRemote prepares injection into the stopped thread pid of a live
// process: it saves the thread's registers and mask and maps a scratch
// area with an injected mmap. syscallAddr must point at a `syscall`
// instruction in the process (the vdso has one). CloseRemote undoes it all.
func OpenRemote(pid int, syscallAddr uint64) (*Remote, error) {
	in, err := NewInjector(pid, syscallAddr)
	if err != nil {
		return nil, err
	}
	addr, err := in.Syscall(unix.SYS_MMAP, 0, ScratchSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		_ = in.Restore()
		return nil, fmt.Errorf("map scratch area in %d: %w", pid, err)
	}
	return &Remote{Injector: in, Pid: pid, NsPid: pid, Scratch: addr, ScratchSize: ScratchSize}, nil
}

// CloseRemote unmaps the scratch area and puts back the registers and
// signal mask the thread had before OpenRemote.
func (r *Remote) CloseRemote() error {
	if r.live != nil {
		return r.closeLive(nil)
	}
	_, uerr := r.Syscall(unix.SYS_MUNMAP, r.Scratch, uint64(r.ScratchSize))
	if err := r.Restore(); err != nil {
		return err
	}
	if uerr != nil {
		return fmt.Errorf("unmap scratch area of %d: %w", r.Pid, uerr)
	}
	return nil
}
