// Package bench measures dump and restore throughput against ceilings
// measured in the same run on the same memory: a bare process_vm_readv,
// process_vm_readv plus writing to the image directory, and
// process_vm_writev into fresh memory of another process.
package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// hogBase is where the hog executable is loaded.
const hogBase = 0x400000

// hogText maps size bytes of private anonymous memory (populated, so every
// page is resident, when populate is set) and then loops in pause():
//
//	mov eax, 9; xor edi, edi; movabs rsi, size; mov edx, 3
//	mov r10d, flags; mov r8, -1; xor r9d, r9d; syscall
//	loop: mov eax, 34; syscall; jmp loop
func hogText(size uint64, populate bool) []byte {
	flags := uint32(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)
	if populate {
		flags |= unix.MAP_POPULATE
	}
	t := []byte{0xb8, 0x09, 0, 0, 0, 0x31, 0xff, 0x48, 0xbe}
	t = binary.LittleEndian.AppendUint64(t, size)
	t = append(t, 0xba, 0x03, 0, 0, 0, 0x41, 0xba)
	t = binary.LittleEndian.AppendUint32(t, flags)
	t = append(t, 0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x45, 0x31, 0xc9, 0x0f, 0x05)
	return append(t, 0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7)
}

// hog is a running single-threaded process holding size bytes of memory.
type hog struct {
	pid        int
	addr, size uint64
}

// startHog writes the hog program into dir and runs it, waiting until its
// mapping exists (and, if populate, is resident).
func startHog(dir string, size uint64, populate bool) (*hog, error) {
	exe := filepath.Join(dir, fmt.Sprintf("hog-%t", populate))
	if err := os.WriteFile(exe, stub.Program(hogBase, hogText(size, populate)), 0o700); err != nil {
		return nil, fmt.Errorf("write hog: %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	p, err := os.StartProcess(exe, []string{"rtcr-bench-hog"}, &os.ProcAttr{Files: []*os.File{null, null, null}})
	if err != nil {
		return nil, fmt.Errorf("start hog: %w", err)
	}
	h := &hog{pid: p.Pid, size: size}
	_ = p.Release()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if ok, err := h.ready(populate); err != nil || ok {
			if err != nil {
				h.kill()
			}
			return h, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.kill()
	return nil, fmt.Errorf("hog %d did not map %d bytes in time", h.pid, size)
}

// ready finds the hog's mapping and, with populate, checks it is resident
// and the hog is sleeping in pause().
func (h *hog) ready(populate bool) (bool, error) {
	maps, err := procfs.ReadMaps(h.pid)
	if err != nil {
		return false, err
	}
	for _, m := range maps {
		if m.Path == "" && m.Size() == h.size {
			h.addr = m.Start
		}
	}
	if h.addr == 0 {
		return false, nil
	}
	st, err := procfs.ReadStat(h.pid)
	if err != nil {
		return false, err
	}
	return !populate || st.State == 'S', nil
}

// kill kills the process holding the hog's pid and reaps it.
func (h *hog) kill() {
	_ = unix.Kill(h.pid, unix.SIGKILL)
	var ws unix.WaitStatus
	_, _ = unix.Wait4(h.pid, &ws, 0, nil)
}
