package ptrace

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReadMem reads len(buf) bytes at addr of process pid with
// process_vm_readv, falling back to /proc/PID/mem (which can also read
// pages the process cannot, such as PROT_NONE ones).
func ReadMem(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err == nil && n == len(buf) {
		return nil
	}
	f, ferr := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if ferr != nil {
		return fmt.Errorf("read %d bytes at %#x of %d: %w", len(buf), addr, pid, ferr)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, int64(addr)); err != nil {
		return fmt.Errorf("read %d bytes at %#x of %d: %w", len(buf), addr, pid, err)
	}
	return nil
}

// WriteMem writes data at addr of process pid with process_vm_writev,
// falling back to /proc/PID/mem (which can write read-only pages).
func WriteMem(pid int, addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &data[0]}}
	local[0].SetLen(len(data))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(data)}}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err == nil && n == len(data) {
		return nil
	}
	f, ferr := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_WRONLY, 0)
	if ferr != nil {
		return fmt.Errorf("write %d bytes at %#x of %d: %w", len(data), addr, pid, ferr)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, int64(addr)); err != nil {
		return fmt.Errorf("write %d bytes at %#x of %d: %w", len(data), addr, pid, err)
	}
	return nil
}
