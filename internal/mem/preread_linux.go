package mem

import (
	"sync"
	"sync/atomic"

	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/vmaflags"
)

// The VmFlags of a frozen process come from /proc/PID/smaps, for which
// the kernel walks every page table (layout_linux.go): 7–40 ms for 1 GiB
// resident on our VMs, the floor of an increment's freeze. PreRead reads
// smaps before the freeze instead, and the freeze proves it still true:
//
//   - a BPF iterator (internal/vmaflags) reads every mapping's range and
//     vm_flags word, the very word smaps prints as VmFlags, and the
//     sequence count of the address space's mmap lock, which moves each
//     time the lock is taken for writing, as every change of a mapping's
//     range or flags takes it. Read before and after smaps: when both
//     reads are identical, sequence count included (and even: no writer
//     was inside), no mapping changed while smaps was read, and smaps'
//     flags are those words;
//   - in the freeze (after rtcr's own injected calls) the iterator reads
//     the words again, in microseconds: when every mapping has the same
//     range and the same word, smaps' VmFlags are the frozen process's,
//     bit for bit. Anything else, and smaps is read in the freeze as
//     before; so is it when the lines of maps read in the freeze (names,
//     offsets, files) differ from those smaps showed (collect).
//
// Without the iterator (no BTF, no BPF, no privilege) every dump reads
// smaps in the freeze.

// preRead is smaps read before the freeze, with the iterator's view.
type preRead struct {
	it   *vmaflags.Iter
	vmas []vmaflags.VMA
	maps []procfs.Mapping
	used atomic.Bool // the freeze took it (takePreRead)
}

// Pre is what PreRead did, for its caller.
type Pre struct {
	pid int
	pr  *preRead // nil: nothing was pre-read
}

// Drop drops the pre-read if the dump did not use it; call it once the
// dump is over. A nil Pre does nothing.
func (p *Pre) Drop() {
	if p == nil || p.pr == nil {
		return
	}
	preReads.mu.Lock()
	if preReads.m[p.pid] == p.pr {
		delete(preReads.m, p.pid)
		p.pr.it.Close()
	}
	preReads.mu.Unlock()
}

// State says what became of the pre-read: "unavailable" (no iterator, or
// the mappings changed while smaps was read), "used" (the freeze took its
// VmFlags) or "stale" (the mappings had changed: smaps was read frozen).
func (p *Pre) State() string {
	switch {
	case p == nil || p.pr == nil:
		return "unavailable"
	case p.pr.used.Load():
		return "used"
	}
	return "stale"
}

// preReads are the pre-reads not used yet, by pid.
var preReads struct {
	mu sync.Mutex
	m  map[int]*preRead
}

// PreRead reads /proc/PID/smaps of pid, which is running, for the next
// dump of pid to use if its mappings are unchanged when it is frozen
// (see above). Call Drop on the result once that dump is over. It does
// nothing when the kernel offers no iterator or the mappings changed
// during the read.
func PreRead(pid int) *Pre {
	drop := &Pre{pid: pid}
	it, err := vmaflags.Open(pid)
	if err != nil {
		return drop
	}
	before, err := it.Read(nil)
	if err != nil || len(before) == 0 {
		it.Close()
		return drop
	}
	maps, err := procfs.ReadSmaps(pid)
	if err != nil {
		it.Close()
		return drop
	}
	after, err := it.Read(nil)
	if err != nil || !quiet(before, after) || !sameRanges(before, maps) {
		it.Close()
		return drop
	}
	pr := &preRead{it: it, vmas: before, maps: maps}
	preReads.mu.Lock()
	if preReads.m == nil {
		preReads.m = map[int]*preRead{}
	}
	if old := preReads.m[pid]; old != nil {
		old.it.Close()
	}
	preReads.m[pid] = pr
	preReads.mu.Unlock()
	return &Pre{pid: pid, pr: pr}
}

// quiet reports whether two reads of the iterator saw the same mappings
// with the same flags and one even sequence count: no writer took the
// mmap lock between them.
func quiet(a, b []vmaflags.VMA) bool {
	if len(a) != len(b) || len(a) == 0 || a[0].LockSeq%2 != 0 {
		return false
	}
	for i := range a {
		if a[i] != b[i] || a[i].LockSeq != a[0].LockSeq {
			return false
		}
	}
	return true
}

// sameRanges reports whether smaps lists the iterator's mappings ([vsyscall],
// which the iterator does not show, aside).
func sameRanges(vmas []vmaflags.VMA, maps []procfs.Mapping) bool {
	j := 0
	for _, m := range maps {
		if m.Path == "[vsyscall]" {
			continue
		}
		if j >= len(vmas) || vmas[j].Start != m.Start || vmas[j].End != m.End {
			return false
		}
		j++
	}
	return j == len(vmas)
}

// takePreRead returns smaps of the frozen process pid from its pre-read
// when every mapping still has the range and flags word it had then, or
// nil (smaps must be read now). The pre-read is used up either way.
func takePreRead(pid int) []procfs.Mapping {
	preReads.mu.Lock()
	pr := preReads.m[pid]
	delete(preReads.m, pid)
	preReads.mu.Unlock()
	if pr == nil {
		return nil
	}
	defer pr.it.Close()
	now, err := pr.it.Read(nil)
	if err != nil || len(now) != len(pr.vmas) {
		return nil
	}
	for i, v := range now {
		w := pr.vmas[i]
		if v.Start != w.Start || v.End != w.End || v.Flags != w.Flags {
			return nil
		}
	}
	pr.used.Store(true)
	return pr.maps
}

// maxPreRead bounds the processes of a tree PreReadTree reads: each holds
// an iterator (an fd) until the dump is over.
const maxPreRead = 64

// PreSet is the pre-reads of a tree (PreReadTree).
type PreSet []*Pre

// PreReadTree pre-reads (PreRead) root and its descendants, found
// through /proc/PID/task/TID/children while the tree runs, breadth first,
// at most maxPreRead of them. A process that is gone, or not yet there,
// by the freeze has its smaps read frozen as before.
func PreReadTree(root int) PreSet {
	var set PreSet
	queue := []int{root}
	for len(queue) > 0 && len(set) < maxPreRead {
		pid := queue[0]
		queue = queue[1:]
		set = append(set, PreRead(pid))
		kids, err := procfs.ReadChildren(pid)
		if err == nil {
			queue = append(queue, kids...)
		}
	}
	return set
}

// Drop drops every pre-read the dump did not use.
func (s PreSet) Drop() {
	for _, p := range s {
		p.Drop()
	}
}

// Count returns how many of the pre-reads are in state (see Pre.State).
func (s PreSet) Count(state string) int {
	n := 0
	for _, p := range s {
		if p.State() == state {
			n++
		}
	}
	return n
}
