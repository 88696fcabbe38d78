package mem

import (
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
)

// scanRemote records the runs of v's pages that keep accepts as v.Remote
// spans (DumpRemote): they exist in the process but are not copied.
func scanRemote(pm *procfs.Pagemap, v *image.VMA, keep func(addr, e uint64) bool, entries *[]uint64) error {
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
