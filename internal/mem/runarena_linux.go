package mem

import (
	"sync"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
)

// The page runs of an increment's tracked mappings are made in the
// freeze, one list per mapping naming every run of the chain there: after
// many increments of a randomly written mapping, a hundred thousand runs of
// 40 bytes, whose fresh memory cost more than the rest of the memory step
// (its page faults, ~12 µs each on our VMs, and the runtime's clearing).
// A dump therefore makes room for them before the freeze (PrepareRuns),
// sized from the parent image, which it has read by then; the freeze's
// lists are carved from it (takeRuns) and fall back to fresh memory when
// it is used up.

// runArena is the room PrepareRuns made; each takeRuns reserves a part of
// it for good (a part never goes back: the image's lists keep it).
var runArena struct {
	mu   sync.Mutex
	free []image.PageRun // len 0; its capacity is the room left
}

// PrepareRuns makes room for about n page runs, touched so that the
// kernel's page faults happen now and not in the freeze. It replaces the
// room of an earlier dump (lists carved from that stay with their image).
func PrepareRuns(n int) {
	if n <= 0 {
		return
	}
	buf := make([]image.PageRun, n)
	step := max(1, 4096/int(unsafe.Sizeof(image.PageRun{})))
	for i := 0; i < n; i += step {
		buf[i].Count = 1 // a write per page: the fault is taken here
	}
	runArena.mu.Lock()
	runArena.free = buf[:0]
	runArena.mu.Unlock()
}

// takeRuns returns an empty list with room for n runs: a part of the
// prepared room when enough is left, else fresh memory. Appending beyond
// n moves the list to fresh memory, never into another part.
func takeRuns(n int) []image.PageRun {
	runArena.mu.Lock()
	defer runArena.mu.Unlock()
	if cap(runArena.free) < n {
		return make([]image.PageRun, 0, n)
	}
	s := runArena.free[:0:n]
	runArena.free = runArena.free[n:n]
	return s
}
