package mem

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lockedBuffer is an io.Writer safe for the copier's writer goroutine
// and the test reading it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// TestCopierHold: a holding copier (DumpLater) writes nothing while what
// it copied fits in its buffers, and everything, in order, at close; one
// that copies more than its buffers hold writes as it goes once they run
// out. The copy reads this process's own memory.
func TestCopierHold(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    int
		written bool // some bytes written before close
	}{
		{"fits", copyBuf + copyBuf/2, false},
		{"exceeds", copyBuffers*copyBuf + copyBuf, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := unix.Mmap(-1, 0, tc.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(src)
			for i := 0; i < len(src); i += 4096 {
				src[i], src[i+1] = byte(i>>12), byte(i>>20)
			}
			var out lockedBuffer
			cp := newCopier(os.Getpid(), &out, nil)
			cp.hold = true
			addr := uint64(uintptr(unsafe.Pointer(&src[0])))
			// Page by page, as an increment's scattered pages.
			for off := 0; off < len(src); off += 4096 {
				if err := cp.add(addr+uint64(off), 4096, false); err != nil {
					t.Fatal(err)
				}
			}
			if err := cp.flush(); err != nil {
				t.Fatal(err)
			}
			if got := out.len() > 0; got != tc.written {
				t.Fatalf("%d of %d bytes written before close, want some written: %v", out.len(), len(src), tc.written)
			}
			if err := cp.close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.buf.Bytes(), src) {
				t.Fatalf("page file of %d bytes differs from the %d bytes copied", out.buf.Len(), len(src))
			}
		})
	}
}
