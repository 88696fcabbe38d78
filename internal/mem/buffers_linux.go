package mem

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Copy buffers are what process_vm_readv copies a frozen process's pages
// into. On our VMs the first copy into a page of fresh memory is what
// costs: 1024 scattered pages copied into a fresh buffer took 10–60 ms,
// populated (MADV_POPULATE_WRITE) or touched beforehand 10–20 ms, into a
// buffer the kernel had written into before 1.5–2.5 ms; each first write
// by the kernel into a small page costs a fault of the hypervisor (with
// shadow paging, as `pvm_*` in perf shows; a user-space touch does not
// help). So the buffers are
//   - transparent huge pages where the kernel gives them (2 MiB aligned,
//     MADV_HUGEPAGE, then MADV_POPULATE_WRITE: 1–5 ms for 8 MiB, and the
//     copy into them as fast as into a used buffer),
//   - made before the freeze (PrepareBuffers), and
//   - kept between dumps in a pool of at most copyBuffers (32 MiB held by
//     a process that checkpoints again and again: rtcr run --every, the
//     Checkpointer), so that the freeze copies into buffers used before.

// hugePage is the size of a transparent huge page on x86_64.
const hugePage = 2 << 20

// pool holds the copy buffers no copier uses (mapped, copyBuf bytes each).
var pool struct {
	mu   sync.Mutex
	free [][]byte
	// shares counts, for a buffer lent in parts (spare), the copiers
	// besides the first that still use it: it goes back with the last.
	shares map[*byte]int
}

// shareBuffer records one more user of the mapped buffer b (spare.take).
func shareBuffer(b []byte) {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.shares == nil {
		pool.shares = map[*byte]int{}
	}
	pool.shares[unsafe.SliceData(b)]++
}

// PrepareBuffers makes n copy buffers ready in the pool (mapped and
// populated) unless it holds them already; a dump calls it before it
// freezes the tree.
func PrepareBuffers(n int) {
	n = min(n, copyBuffers)
	pool.mu.Lock()
	have := len(pool.free)
	pool.mu.Unlock()
	for ; have < n; have++ {
		b := newBuffer()
		if b == nil {
			return
		}
		_ = unix.Madvise(b, unix.MADV_POPULATE_WRITE)
		putBuffer(b)
	}
}

// getBuffer returns a copy buffer of copyBuf bytes: one from the pool, a
// new mapping (mapped: give it back with putBuffer), or Go memory when
// mapping fails.
func getBuffer() (b []byte, mapped bool) {
	pool.mu.Lock()
	if k := len(pool.free); k > 0 {
		b = pool.free[k-1]
		pool.free = pool.free[:k-1]
	}
	pool.mu.Unlock()
	if b == nil {
		b = newBuffer()
	}
	if b == nil {
		return make([]byte, copyBuf), false
	}
	return b, true
}

// putBuffer gives the mapped buffer b back to the pool, or unmaps it when
// the pool is full; a shared one (shareBuffer) only when this was its last
// user.
func putBuffer(b []byte) {
	b = b[:copyBuf]
	pool.mu.Lock()
	if n := pool.shares[unsafe.SliceData(b)]; n > 0 {
		// Another copier still uses part of it.
		if n == 1 {
			delete(pool.shares, unsafe.SliceData(b))
		} else {
			pool.shares[unsafe.SliceData(b)] = n - 1
		}
		pool.mu.Unlock()
		return
	}
	if len(pool.free) < copyBuffers {
		pool.free = append(pool.free, b)
		b = nil
	}
	pool.mu.Unlock()
	if b != nil {
		_ = unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)))
	}
}

// newBuffer maps a buffer of copyBuf bytes aligned to huge pages and asks
// for them (MADV_HUGEPAGE; the kernel may still give small pages). Its
// pages are populated when first needed (flush, PrepareBuffers). It
// returns nil when mapping fails.
func newBuffer() []byte {
	size := uintptr(copyBuf + hugePage)
	p, err := unix.MmapPtr(-1, 0, nil, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	start := uintptr(p)
	aligned := (start + hugePage - 1) &^ (hugePage - 1)
	// The unaligned head and tail go back; only the aligned middle stays.
	if head := aligned - start; head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	if tail := start + size - (aligned + copyBuf); tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(p, aligned-start+copyBuf), tail)
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, aligned-start)), copyBuf)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b
}
