package mem

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSpareLent: holding copiers of the processes of one dump, one after
// the other, copy into the rest of the buffer the one before filled (no
// buffer of their own), each page file gets exactly its own bytes at
// close, whatever order the copiers close in, and the buffer goes back to
// the pool once, with its last user. A rest nobody took before its lender
// closed is not lent any more.
func TestSpareLent(t *testing.T) {
	src, err := unix.Mmap(-1, 0, 3*64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(src)
	for i := range src {
		src[i] = byte(i*7 + i>>12)
	}
	addr := uint64(uintptr(unsafe.Pointer(&src[0])))
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		pool.mu.Lock()
		before := len(pool.free)
		pool.mu.Unlock()
		var sp spare
		var cps []*copier
		var outs []*lockedBuffer
		for k := range 3 {
			out := &lockedBuffer{}
			cp := newCopier(os.Getpid(), out, &sp)
			cp.hold = true
			if k > 0 && len(cp.mapped) != 1 || k > 0 && unsafe.SliceData(cp.mapped[0]) != unsafe.SliceData(cps[0].mapped[0]) {
				t.Fatalf("copier %d: buffers %d, not the first copier's", k, len(cp.mapped))
			}
			part := uint64(k) * 64 << 10
			for off := uint64(0); off < 64<<10; off += 4096 {
				if err := cp.add(addr+part+off, 4096, false); err != nil {
					t.Fatal(err)
				}
			}
			if err := cp.flush(); err != nil {
				t.Fatal(err)
			}
			sp.lend(cp)
			cps, outs = append(cps, cp), append(outs, out)
		}
		for _, k := range order {
			if err := cps[k].close(); err != nil {
				t.Fatal(err)
			}
			if outs[k].len() != 64<<10 || !bytes.Equal(outs[k].buf.Bytes(), src[k*64<<10:(k+1)*64<<10]) {
				t.Fatalf("order %v: page file %d differs from its process's bytes", order, k)
			}
		}
		pool.mu.Lock()
		after, shares := len(pool.free), len(pool.shares)
		seen := map[*byte]bool{}
		for _, b := range pool.free {
			if seen[unsafe.SliceData(b)] {
				t.Errorf("order %v: a buffer is in the pool twice", order)
			}
			seen[unsafe.SliceData(b)] = true
		}
		pool.mu.Unlock()
		if shares != 0 || after > before+1 {
			t.Fatalf("order %v: pool %d buffers (before %d), %d still shared", order, after, before, shares)
		}
		// The last copier lent its rest, then closed: nothing to take.
		var c copier
		if sp.take(&c) {
			t.Fatalf("order %v: a closed copier's rest was still lent", order)
		}
	}
}
