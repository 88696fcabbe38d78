package files

import (
	"math/bits"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFindSharedScales opens 1000 eventfds (all on one anonymous inode)
// and a dup of every tenth in the test process: findShared must group each
// dup with its original and no other fd, with O(n log n) kcmp calls (it
// compared every fd with every description on the same inode before:
// about 500,000 calls here).
func TestFindSharedScales(t *testing.T) {
	const n = 1000
	var fds, dups []int
	defer func() {
		for _, fd := range append(fds, dups...) {
			unix.Close(fd)
		}
	}()
	for i := 0; i < n; i++ {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		if i%10 == 0 {
			d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			dups = append(dups, d)
		}
	}
	pid := os.Getpid()
	tr := &Tree{}
	before := kcmpCalls
	if err := tr.findShared([]int{pid}); err != nil {
		t.Fatal(err)
	}
	calls := kcmpCalls - before
	total := n + len(dups)
	if limit := total * (bits.Len(uint(total)) + 1); calls > limit {
		t.Errorf("%d kcmp calls for %d fds, want at most %d (n log n)", calls, total, limit)
	}
	t.Logf("%d kcmp calls for %d fds", calls, total)
	ids := map[int]int{} // description id: fds with it
	for i, d := range dups {
		orig := fds[i*10]
		a, b := tr.shared[fdRef{pid, orig}], tr.shared[fdRef{pid, d}]
		if a == 0 || a != b {
			t.Errorf("fd %d and its dup %d: descriptions %d and %d, want one", orig, d, a, b)
		}
		ids[a]++
	}
	for i, fd := range fds {
		if id := tr.shared[fdRef{pid, fd}]; i%10 != 0 && id != 0 {
			t.Errorf("fd %d shares description %d, want none", fd, id)
		}
	}
	for id, k := range ids {
		if k != 1 {
			t.Errorf("description %d holds %d of the dups, want 1", id, k)
		}
	}
}
