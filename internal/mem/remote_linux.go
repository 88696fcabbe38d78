package mem

import (
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/track"
)

// scanRemote records the pages of v that exist (present or swapped) as
// v.Remote spans (DumpRemote): they are not copied. One PAGEMAP_SCAN
// walk returns them as ranges (sc); without it (older kernels, sc nil or
// failing) the pagemap entries are read and keep decides.
func scanRemote(pm *procfs.Pagemap, sc *track.Scanner, v *image.VMA, keep func(addr, e uint64) bool, entries *[]uint64) error {
	if sc != nil {
		if rs, err := sc.Existing(v.Start, v.End); err == nil {
			for _, r := range rs {
				v.Remote = append(v.Remote, image.PageSpan{Addr: r[0], Count: (r[1] - r[0]) / image.PageSize})
			}
			return nil
		}
	}
	return scanRemoteEntries(pm, v, keep, entries)
}

// scanRemoteEntries is scanRemote from the pagemap entries.
func scanRemoteEntries(pm *procfs.Pagemap, v *image.VMA, keep func(addr, e uint64) bool, entries *[]uint64) error {
	for start := v.Start; start < v.End; {
		end := min(v.End, start+scanBatch*image.PageSize)
		var err error
		*entries, err = pm.Read(start, end, *entries)
		if err != nil {
			return err
		}
		for i := 0; i < len(*entries); {
			addr := start + uint64(i)*image.PageSize
			if !keep(addr, (*entries)[i]) {
				i++
				continue
			}
			j := i + 1
			for j < len(*entries) && keep(start+uint64(j)*image.PageSize, (*entries)[j]) {
				j++
			}
			s := image.PageSpan{Addr: addr, Count: uint64(j - i)}
			if n := len(v.Remote); n > 0 && v.Remote[n-1].End() == s.Addr {
				v.Remote[n-1].Count += s.Count // a run across two batches
			} else {
				v.Remote = append(v.Remote, s)
			}
			i = j
		}
		start = end
	}
	return nil
}
