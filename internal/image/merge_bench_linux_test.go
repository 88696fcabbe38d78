package image

import (
	"os"
	"path/filepath"
	"testing"
)

// bigSeries writes a full image of n pages (one heap mapping) and an
// increment on it that writes every stride-th page, under root; it
// returns their directories.
func bigSeries(b *testing.B, root string, n, stride int) []string {
	b.Helper()
	dirs := []string{filepath.Join(root, "1"), filepath.Join(root, "2")}
	var parent *Checkpoint
	for k, dir := range dirs {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		c := sampleCheckpoint()
		c.ID = NewID()
		p := &c.Processes[0]
		p.VMAs[0].Pages = nil
		v := &p.VMAs[1]
		v.End = heapStart + uint64(n)*PageSize
		p.MM.Brk = v.End
		v.Pages = nil
		var own int64
		for i := 0; i < n; i++ {
			r := PageRun{Addr: heapStart + uint64(i)*PageSize, Count: 1}
			if k == 0 || i%stride == 0 {
				r.FileOff = own * PageSize
				own++
			} else {
				r.Depth, r.FileOff = 1, int64(i)*PageSize
			}
			appendTestRun(v, r)
		}
		p.PageFile = PageFileName(NewID()[:16], p.Pid)
		f, err := os.Create(filepath.Join(dir, p.PageFile))
		if err != nil {
			b.Fatal(err)
		}
		pw := NewPageWriter(f)
		page := make([]byte, PageSize)
		for i := int64(0); i < own; i++ {
			page[0] = byte(i)
			if _, err := pw.Write(page); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
		p.PageFileSize, p.PageChecksums = pw.Offset(), pw.Checksums()
		if parent != nil {
			c.Parent = &ParentLink{Dir: "../1", ID: parent.ID, Sum: parent.SumHex()}
			c.ChainLen = 1
		}
		if err := WriteManifest(dir, c); err != nil {
			b.Fatal(err)
		}
		if parent, err = ReadManifest(dir); err != nil {
			b.Fatal(err)
		}
	}
	return dirs
}

// appendTestRun appends r to v.Pages, joined with the last run when
// contiguous in memory and in the same file.
func appendTestRun(v *VMA, r PageRun) {
	if k := len(v.Pages) - 1; k >= 0 {
		q := &v.Pages[k]
		if q.Depth == r.Depth && q.Addr+q.Count*PageSize == r.Addr && q.FileOff+int64(q.Count)*PageSize == r.FileOff {
			q.Count += r.Count
			return
		}
	}
	v.Pages = append(v.Pages, r)
}

// BenchmarkMerge merges a 256 MiB full image into an increment that wrote
// 1 % of its pages, by copying and into the base (RTCR_MERGE_DIR: where,
// default the test's temporary directory).
func BenchmarkMerge(b *testing.B) {
	for _, base := range []bool{false, true} {
		b.Run(map[bool]string{false: "copy", true: "base"}[base], func(b *testing.B) {
			mergeBaseOff = !base
			defer func() { mergeBaseOff = false }()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				root := b.TempDir()
				if d := os.Getenv("RTCR_MERGE_DIR"); d != "" {
					root, _ = os.MkdirTemp(d, "merge-bench-")
				}
				dirs := bigSeries(b, root, 65536, 100)
				b.StartTimer()
				st, err := Merge(dirs[0], dirs[1:])
				if err != nil || st.Base != base {
					b.Fatalf("merge: %+v %v", st, err)
				}
				b.StopTimer()
				os.RemoveAll(root)
				b.ReportMetric(float64(st.Pages), "pages/op")
			}
		})
	}
}
