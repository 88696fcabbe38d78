package mem

import (
	"errors"
	"sort"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
)

// TrackedRanges returns the private anonymous mappings of process pid
// (running or not) that are tracked now (registered for write-protect:
// their "uw" flag, which must be rtcr's), sorted: what pre-copy rounds
// copy. Private file mappings and views of shared memory are left to the
// freeze (a round's re-protection of a shared view would hide its writes
// from the scan of every view, ScanShared).
func TrackedRanges(pid int) ([][2]uint64, error) {
	maps, err := procfs.ReadSmaps(pid)
	if err != nil {
		return nil, err
	}
	inc := &Incr{Tracked: true}
	var out [][2]uint64
	for _, m := range maps {
		if !inc.stripTracking(&m) {
			continue
		}
		v, ok, err := classify(pid, m)
		if err != nil || !ok || !privateAnon(&v) {
			continue // a file mapping classify cannot name is not tracked
		}
		out = append(out, [2]uint64{v.Start, v.End})
	}
	return out, nil
}

// CopyRanges copies the memory of ranges (sorted, page-aligned) of
// process pid, which may be running, into pw and returns the runs where
// the pages landed (depth 0, offsets in pw's file). On an error (a range
// unmapped meanwhile) it returns no runs: bytes already written stay in
// the file, unreferenced.
func CopyRanges(pid int, pw *image.PageWriter, ranges [][2]uint64) ([]image.PageRun, error) {
	cp := newCopier(pid, pw, nil)
	cp.queued = pw.Offset()
	runs := make([]image.PageRun, 0, len(ranges))
	var err error
	for _, r := range ranges {
		runs = append(runs, image.PageRun{Addr: r[0], Count: (r[1] - r[0]) / image.PageSize, FileOff: cp.offset()})
		if err = cp.add(r[0], r[1]-r[0], false); err != nil { // written since: its own
			break
		}
	}
	if cerr := cp.close(); err == nil || (cerr != nil && errors.Is(err, errWriteFailed)) {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return runs, nil
}

// Latest returns the runs of pre overridden by newer, a later copy of
// some of the same pages: the latest copy of every page, sorted.
func Latest(pre, newer []image.PageRun) []image.PageRun {
	out := append(cutRuns(pre, runRanges(newer)), newer...)
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// ArmRanges returns the private anonymous mappings of process pid that
// are not tracked yet (to register) and those that are (to protect
// again): what the short freeze that starts a full image's pre-copy arms,
// without copying a page.
func ArmRanges(pid int) (untracked, tracked [][2]uint64, err error) {
	maps, err := procfs.ReadSmaps(pid)
	if err != nil {
		return nil, nil, err
	}
	inc := &Incr{Tracked: true}
	for _, m := range maps {
		was := inc.stripTracking(&m)
		v, ok, err := classify(pid, m)
		if err != nil || !ok || !privateAnon(&v) {
			continue
		}
		if was {
			tracked = append(tracked, [2]uint64{v.Start, v.End})
		} else {
			untracked = append(untracked, [2]uint64{v.Start, v.End})
		}
	}
	return untracked, tracked, nil
}

// CopyPresent copies, like CopyRanges, the pages of ranges (tracked
// mappings of process pid, which may be running) that hold something: a
// page or a swap entry (empty ones, never written or dropped, are zero and
// left out, as the dump leaves them out).
func CopyPresent(pid int, pw *image.PageWriter, empty func(start, end uint64) ([][2]uint64, error), ranges [][2]uint64) ([]image.PageRun, error) {
	var full [][2]uint64
	for _, r := range ranges {
		e, err := empty(r[0], r[1])
		if err != nil {
			return nil, err
		}
		full = append(full, cutRanges([][2]uint64{r}, e)...)
	}
	return CopyRanges(pid, pw, full)
}
