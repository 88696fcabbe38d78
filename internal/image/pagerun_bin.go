package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Since format version 5 the page runs of a manifest are not JSON objects
// in the VMAs but one binary section after the JSON (see manifest.go): an
// increment of a pre-copy migration lists every run of its chain, tens of
// thousands, and their JSON (about 75 bytes a run) took milliseconds to
// encode, send and decode in the migration's downtime. The section holds
// the runs of every VMA, the processes in their order and each one's VMAs
// in theirs:
//
//	runs    = vmaRuns*                   ; one per VMA, nothing after the last
//	vmaRuns = uvarint(n) run*n           ; n runs, in address order
//	run     = uvarint(gap) uvarint(count) uvarint(depth) uvarint(pid) varint(skip)
//
// Every number is a varint of encoding/binary in its shortest form (varint
// is zigzag-signed). gap is the number of pages between the end of the
// previous run of the VMA (its start, for the first) and the run; count
// its pages (at least 1); depth and pid are PageRun.Depth and PageRun.Pid;
// skip is FileOff in pages minus where the previous run of the same
// depth in the same process ended in its page file (0 for the first), so
// that runs written one after the other take 0. Reading checks each run
// as it goes: inside its VMA, after the previous one, depth at most
// MaxChain, FileOff within [0, MaxInt64]; Validate then checks the rest
// as for runs read from JSON. A run takes 5 bytes at least, and n is
// checked against the bytes left before the runs are allocated.

// minRunBytes is the size of the shortest encoded run.
const minRunBytes = 5

// maxRunOff is the largest file offset, in pages, a run may start at.
const maxRunOff = math.MaxInt64 / PageSize

// appendRuns appends the runs section of c to b. c must be valid
// (Validate): runs sorted inside their VMA, offsets page-aligned and not
// negative, depths within 0..MaxChain.
func appendRuns(b []byte, c *Checkpoint) ([]byte, error) {
	for i := range c.Processes {
		p := &c.Processes[i]
		var next [MaxChain + 1]int64 // per depth: where the last run ended, pages
		for j := range p.VMAs {
			v := &p.VMAs[j]
			b = binary.AppendUvarint(b, uint64(len(v.Pages)))
			cur := v.Start
			for _, r := range v.Pages {
				if r.Addr < cur || r.Addr%PageSize != 0 || r.FileOff < 0 || r.FileOff%PageSize != 0 ||
					r.Depth < 0 || r.Depth > MaxChain || r.Pid < 0 {
					return nil, fmt.Errorf("pid %d: vma %#x-%#x: page run at %#x cannot be encoded", p.Pid, v.Start, v.End, r.Addr)
				}
				off := r.FileOff / PageSize
				b = binary.AppendUvarint(b, (r.Addr-cur)/PageSize)
				b = binary.AppendUvarint(b, r.Count)
				b = binary.AppendUvarint(b, uint64(r.Depth))
				b = binary.AppendUvarint(b, uint64(r.Pid))
				b = binary.AppendVarint(b, off-next[r.Depth])
				cur = r.Addr + r.Count*PageSize
				next[r.Depth] = off + int64(r.Count)
			}
		}
	}
	return b, nil
}

// errRunsShort is the error of a runs section that ends inside a number.
var errRunsShort = errors.New("runs section ends inside a number")

// runReader reads the numbers of a runs section: b[pos:] is what is
// left. (An index rather than a slice cut on each read: no pointer is
// written, so no GC write barrier in the loop over the runs.)
type runReader struct {
	b   []byte
	pos int
}

// left returns the number of bytes not read yet.
func (r *runReader) left() int { return len(r.b) - r.pos }

// uvarint reads an unsigned varint in its shortest form.
func (r *runReader) uvarint() (uint64, error) {
	if r.pos < len(r.b) && r.b[r.pos] < 0x80 {
		r.pos++ // one byte, most numbers of a section
		return uint64(r.b[r.pos-1]), nil
	}
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		if n == 0 {
			return 0, errRunsShort
		}
		return 0, fmt.Errorf("number at byte %d of the runs section overflows 64 bits", r.pos)
	}
	if r.b[r.pos+n-1] == 0 {
		return 0, fmt.Errorf("number at byte %d of the runs section not in its shortest form", r.pos)
	}
	r.pos += n
	return v, nil
}

// varint reads a signed (zigzag) varint in its shortest form.
func (r *runReader) varint() (int64, error) {
	u, err := r.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x, err
}

// decodeRuns reads the runs section b into the VMAs of c, which hold none.
// It allocates no more than a PageRun for every minRunBytes bytes of b,
// and at most MaxPageRuns runs.
func decodeRuns(b []byte, c *Checkpoint) error {
	rd := runReader{b: b}
	total := 0
	for i := range c.Processes {
		p := &c.Processes[i]
		var next [MaxChain + 1]int64
		for j := range p.VMAs {
			v := &p.VMAs[j]
			if v.Pages != nil {
				return fmt.Errorf("pid %d: vma %#x-%#x: page runs in the JSON of a manifest with a runs section", p.Pid, v.Start, v.End)
			}
			if err := readVMARuns(&rd, v, &next, &total); err != nil {
				return fmt.Errorf("pid %d: vma %#x-%#x: %w", p.Pid, v.Start, v.End, err)
			}
		}
	}
	if rd.left() != 0 {
		return fmt.Errorf("%d bytes after the runs of the last vma", rd.left())
	}
	return nil
}

// readVMARuns reads the runs of v; next is where the process's last run of
// each depth ended (pages), total the runs read so far.
func readVMARuns(rd *runReader, v *VMA, next *[MaxChain + 1]int64, total *int) error {
	n, err := rd.uvarint()
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if n > uint64(rd.left()/minRunBytes) || n > uint64(MaxPageRuns-*total) {
		return fmt.Errorf("%d page runs: more than the %d bytes left or the limit of %d runs hold", n, rd.left(), MaxPageRuns)
	}
	*total += int(n)
	if v.Start >= v.End || v.Start%PageSize != 0 || v.End%PageSize != 0 {
		return fmt.Errorf("page runs in a vma that is empty or not page-aligned")
	}
	runs := make(PageRuns, n)
	cur := v.Start // where the previous run ended: no overflow below
	for k := range runs {
		var gap, count, depth, pid uint64
		var skip int64
		if gap, err = rd.uvarint(); err == nil {
			if count, err = rd.uvarint(); err == nil {
				if depth, err = rd.uvarint(); err == nil {
					if pid, err = rd.uvarint(); err == nil {
						skip, err = rd.varint()
					}
				}
			}
		}
		if err != nil {
			return err
		}
		if count == 0 {
			return fmt.Errorf("page run %d: no pages", k)
		}
		left := (v.End - cur) / PageSize // pages from cur to the end
		if gap >= left || count > left-gap {
			return fmt.Errorf("page run %d (%d pages, %d after the previous run): outside vma", k, count, gap)
		}
		addr := cur + gap*PageSize
		if depth > MaxChain || pid > math.MaxInt32 {
			return fmt.Errorf("page run at %#x: depth %d or pid %d out of range", addr, depth, pid)
		}
		last := next[depth]
		if skip < -last || skip > maxRunOff-last {
			return fmt.Errorf("page run at %#x: file offset %d pages from the previous out of range", addr, skip)
		}
		off := last + skip
		runs[k] = PageRun{Addr: addr, Count: count, FileOff: off * PageSize, Depth: int(depth), Pid: int(pid)}
		cur = addr + count*PageSize
		// count < 2^52 (a VMA is under 2^64 bytes) and off <= maxRunOff:
		// the sum fits; Validate bounds it against the page file.
		next[depth] = off + int64(count)
	}
	v.Pages = runs
	return nil
}
