package mem

import (
	"slices"
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
	maps []procfs.Mapping // nil: every word was known (flagWords), smaps not read
	used atomic.Bool      // the freeze took smaps' VmFlags (takePreRead)
	// known is set when the freeze took the VmFlags of known words.
	known atomic.Bool
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
// VmFlags), "known" (the freeze took the VmFlags of flags words smaps
// showed before, flagWords) or "stale" (smaps was read frozen).
func (p *Pre) State() string {
	switch {
	case p == nil || p.pr == nil:
		return "unavailable"
	case p.pr.used.Load():
		return "used"
	case p.pr.known.Load():
		return "known"
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
	pr := &preRead{it: it, vmas: before}
	if _, ok := knownFlags(before); !ok {
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
		learnFlags(before, maps)
		pr.maps = maps
	}
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

// takePreRead returns the VmFlags of the frozen process pid from its
// pre-read: smaps read before the freeze (maps) when every mapping still
// has the range and flags word it had then, or else, when every flags
// word is one smaps showed before (flagWords), the iterator's mappings
// now and their VmFlags (vmas, flags); nil, nil, nil when neither holds
// (smaps must be read now). The pre-read is used up either way.
func takePreRead(pid int) (maps []procfs.Mapping, vmas []vmaflags.VMA, flags [][]string) {
	preReads.mu.Lock()
	pr := preReads.m[pid]
	delete(preReads.m, pid)
	preReads.mu.Unlock()
	if pr == nil {
		return nil, nil, nil
	}
	defer pr.it.Close()
	now, err := pr.it.Read(nil)
	if err != nil || len(now) == 0 {
		return nil, nil, nil
	}
	if pr.maps != nil && sameWords(now, pr.vmas) {
		pr.used.Store(true)
		return pr.maps, nil, nil
	}
	if flags, ok := knownFlags(now); ok {
		pr.known.Store(true)
		return nil, now, flags
	}
	return nil, nil, nil
}

// sameWords reports whether a and b list the same ranges with the same
// flags words.
func sameWords(a, b []vmaflags.VMA) bool {
	if len(a) != len(b) {
		return false
	}
	for i, v := range a {
		w := b[i]
		if v.Start != w.Start || v.End != w.End || v.Flags != w.Flags {
			return false
		}
	}
	return true
}

// The VmFlags line of smaps is printed from the mapping's vm_flags word
// alone, bit by bit (the kernel's show_smap_vma_flags): on one kernel a
// word always reads the same. flagWords keeps what quiet pre-reads saw,
// word by word, for the life of the rtcr process, so that a process whose
// words are all known needs no smaps at all, before or in the freeze: the
// freeze reads the words (the iterator) and the rest of each line from
// /proc/PID/maps. Two different lines for one word would disprove the
// premise: the cache is then never used again.
var flagWords struct {
	mu     sync.Mutex
	m      map[uint64][]string
	broken bool
}

// maxFlagWords bounds the cache (a few dozen words are usual).
const maxFlagWords = 4096

// learnFlags records the VmFlags smaps showed for each word of vmas
// (read quietly around it: sameRanges holds).
func learnFlags(vmas []vmaflags.VMA, maps []procfs.Mapping) {
	flagWords.mu.Lock()
	defer flagWords.mu.Unlock()
	if flagWords.m == nil {
		flagWords.m = map[uint64][]string{}
	}
	j := 0
	for _, m := range maps {
		if m.Path == "[vsyscall]" {
			continue
		}
		w := vmas[j].Flags
		j++
		if old, ok := flagWords.m[w]; ok {
			if !slices.Equal(old, m.VmFlags) {
				flagWords.broken = true
			}
			continue
		}
		if len(flagWords.m) < maxFlagWords && m.VmFlags != nil {
			flagWords.m[w] = slices.Clone(m.VmFlags)
		}
	}
}

// knownFlags returns the VmFlags of every mapping of vmas if every word
// is known.
func knownFlags(vmas []vmaflags.VMA) ([][]string, bool) {
	flagWords.mu.Lock()
	defer flagWords.mu.Unlock()
	if flagWords.broken || len(vmas) == 0 {
		return nil, false
	}
	out := make([][]string, len(vmas))
	for i, v := range vmas {
		f, ok := flagWords.m[v.Flags]
		if !ok {
			return nil, false
		}
		out[i] = f
	}
	return out, true
}

// withFlags returns the lines of layout (/proc/PID/maps, read frozen)
// with the VmFlags of the iterator's mappings vmas (read frozen too), or
// false when they do not list the same ranges ([vsyscall] aside, which no
// image holds: its flags stay empty).
func withFlags(layout []procfs.Mapping, vmas []vmaflags.VMA, flags [][]string) ([]procfs.Mapping, bool) {
	if !sameRanges(vmas, layout) {
		return nil, false
	}
	out := make([]procfs.Mapping, len(layout))
	j := 0
	for i, m := range layout {
		out[i] = m
		if m.Path == "[vsyscall]" {
			out[i].VmFlags = []string{}
			continue
		}
		if !sameProt(m, flags[j]) {
			return nil, false
		}
		out[i].VmFlags = slices.Clone(flags[j])
		j++
	}
	return out, true
}

// sameProt reports whether the permissions of m, a line of maps, are those
// the VmFlags flags say (rd, wr, ex, ms), as they are when both were read
// at once. The words were read before maps: a permission changed in
// between (by a process outside the tree sharing the memory) must not
// pair a line's permissions with flags of before, as a read of smaps with
// maps would have shown (joinLayout).
func sameProt(m procfs.Mapping, flags []string) bool {
	has := func(f string) bool { return slices.Contains(flags, f) }
	return m.Read == has("rd") && m.Write == has("wr") && m.Exec == has("ex") && m.Shared == has("ms")
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
