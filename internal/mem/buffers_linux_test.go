package mem

import (
	"testing"
	"unsafe"
)

// TestBufferPool: prepared buffers are mapped, of copyBuf bytes, aligned
// to huge pages, handed out and taken back; the pool keeps at most
// copyBuffers of them.
func TestBufferPool(t *testing.T) {
	PrepareBuffers(2)
	pool.mu.Lock()
	have := len(pool.free)
	pool.mu.Unlock()
	if have < 2 {
		t.Fatalf("pool holds %d buffers after PrepareBuffers(2)", have)
	}
	var got [][]byte
	for range copyBuffers + 2 {
		b, mapped := getBuffer()
		if !mapped || len(b) != copyBuf || uintptr(unsafe.Pointer(&b[0]))%hugePage != 0 {
			t.Fatalf("buffer of %d bytes at %p, mapped %v", len(b), &b[0], mapped)
		}
		b[0], b[len(b)-1] = 1, 2 // writable end to end
		got = append(got, b)
	}
	for _, b := range got {
		putBuffer(b[:0])
	}
	pool.mu.Lock()
	have = len(pool.free)
	pool.mu.Unlock()
	if have != copyBuffers {
		t.Fatalf("pool holds %d buffers, want %d", have, copyBuffers)
	}
}
