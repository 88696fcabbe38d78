package mem

import (
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

// TestTakeRuns: lists carved from the prepared room never share memory,
// appending past a list's room moves it rather than writing into the next
// one, and an exhausted room gives fresh memory.
func TestTakeRuns(t *testing.T) {
	PrepareRuns(10)
	a := takeRuns(4)
	b := takeRuns(4)
	if cap(a) != 4 || cap(b) != 4 || len(a) != 0 {
		t.Fatalf("takeRuns(4): len %d cap %d and cap %d", len(a), cap(a), cap(b))
	}
	for i := range 4 {
		a = append(a, image.PageRun{Addr: uint64(i)})
		b = append(b, image.PageRun{Addr: 100 + uint64(i)})
	}
	a = append(a, image.PageRun{Addr: 4}) // past its room: moved
	for i, r := range b {
		if r.Addr != 100+uint64(i) {
			t.Fatalf("b[%d] = %d after appending to a: the lists overlap", i, r.Addr)
		}
	}
	c := takeRuns(4) // 2 left: fresh memory
	c = append(c, image.PageRun{Addr: 7})
	if cap(c) < 4 || b[3].Addr != 103 || a[4].Addr != 4 {
		t.Fatalf("after the room ran out: cap %d, b[3] %d, a[4] %d", cap(c), b[3].Addr, a[4].Addr)
	}
	if d := takeRuns(2); cap(d) != 2 {
		t.Fatalf("the last 2 of the room: cap %d", cap(d))
	}
}
