package bench

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// writerText maps size bytes of private anonymous memory, populated, and
// then works forever: spin iterations of a countdown loop, then one write
// into the next page (stride pages further, wrapping), then one increment
// of the work counter in the first 8 bytes of the mapping:
//
//	mov eax, 9; xor edi, edi; movabs rsi, size; mov edx, 3
//	mov r10d, flags; mov r8, -1; xor r9d, r9d; syscall
//	mov rbx, rax; movabs r12, npages; xor r13d, r13d
//	loop: mov ecx, spin
//	spin: dec ecx; jnz spin
//	mov rax, r13; shl rax, 12; add qword [rbx+rax+8], 1
//	add qword [rbx], 1
//	add r13, stride; cmp r13, r12; jb loop
//	sub r13, r12; jmp loop
//
// stride must be below npages.
func writerText(size uint64, spin, stride uint32) []byte {
	flags := uint32(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE)
	t := []byte{0xb8, 0x09, 0, 0, 0, 0x31, 0xff, 0x48, 0xbe}
	t = binary.LittleEndian.AppendUint64(t, size)
	t = append(t, 0xba, 0x03, 0, 0, 0, 0x41, 0xba)
	t = binary.LittleEndian.AppendUint32(t, flags)
	t = append(t, 0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x45, 0x31, 0xc9, 0x0f, 0x05)
	t = append(t, 0x48, 0x89, 0xc3, 0x49, 0xbc)
	t = binary.LittleEndian.AppendUint64(t, size/image.PageSize)
	t = append(t, 0x45, 0x31, 0xed)
	t = append(t, 0xb9) // loop:
	t = binary.LittleEndian.AppendUint32(t, spin)
	t = append(t, 0xff, 0xc9, 0x75, 0xfc) // spin:
	t = append(t, 0x4c, 0x89, 0xe8, 0x48, 0xc1, 0xe0, 0x0c, 0x48, 0x83, 0x44, 0x03, 0x08, 0x01)
	t = append(t, 0x48, 0x83, 0x03, 0x01)
	t = append(t, 0x49, 0x81, 0xc5)
	t = binary.LittleEndian.AppendUint32(t, stride)
	t = append(t, 0x4d, 0x39, 0xe5, 0x72, 0xda)
	return append(t, 0x4d, 0x29, 0xe5, 0xeb, 0xd5)
}

// writer is a running single-threaded process that writes its memory at a
// steady rate and counts its work.
type writer struct {
	pid        int
	addr, size uint64
}

// writerStride returns a stride near 1 MiB that visits every one of
// npages pages before coming back (coprime with npages), so that the
// pages written between two checkpoints are scattered.
func writerStride(npages uint64) uint32 {
	if npages <= 257 {
		return 1
	}
	s := uint64(257)
	for gcd(s, npages) != 1 {
		s += 2
	}
	return uint32(s)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// startWriter writes the writer program into dir and runs it, waiting
// until its memory is resident and it has started counting.
func startWriter(dir string, size uint64, spin uint32) (*writer, error) {
	npages := size / image.PageSize
	if npages < 2 || npages > 1<<31 {
		return nil, fmt.Errorf("bench: writer size %d out of range", size)
	}
	exe := filepath.Join(dir, "writer")
	if err := os.WriteFile(exe, stub.Program(hogBase, writerText(size, spin, writerStride(npages))), 0o700); err != nil {
		return nil, fmt.Errorf("write writer: %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	p, err := os.StartProcess(exe, []string{"rtcr-bench-writer"}, &os.ProcAttr{Files: []*os.File{null, null, null}})
	if err != nil {
		return nil, fmt.Errorf("start writer: %w", err)
	}
	w := &writer{pid: p.Pid, size: size}
	_ = p.Release()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		maps, err := procfs.ReadMaps(w.pid)
		if err != nil {
			w.kill()
			return nil, fmt.Errorf("writer %d: %w", w.pid, err)
		}
		for _, m := range maps {
			if m.Path == "" && m.Size() == size {
				w.addr = m.Start
			}
		}
		if w.addr != 0 {
			if n, err := w.count(); err == nil && n > 0 {
				return w, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.kill()
	return nil, fmt.Errorf("writer %d did not start counting in time", w.pid)
}

// count reads the writer's work counter: the pages it has written.
func (w *writer) count() (uint64, error) {
	var b [8]byte
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(8)
	remote := []unix.RemoteIovec{{Base: uintptr(w.addr), Len: 8}}
	if _, err := unix.ProcessVMReadv(w.pid, local, remote, 0); err != nil {
		return 0, fmt.Errorf("read the counter of writer %d: %w", w.pid, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// kill kills the writer and reaps it.
func (w *writer) kill() {
	_ = unix.Kill(w.pid, unix.SIGKILL)
	var ws unix.WaitStatus
	_, _ = unix.Wait4(w.pid, &ws, 0, nil)
}
