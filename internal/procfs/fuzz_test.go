package procfs

import (
	"bytes"
	"testing"
)

// The fuzz targets check that the parsers never panic and that what they
// accept is consistent. go test runs them on the seeds only.

func addSeeds(f *testing.F, files ...string) {
	for _, name := range files {
		f.Add(readTestdata(f, name))
	}
}

func FuzzParseMaps(f *testing.F) {
	addSeeds(f, "maps.txt", "smaps.txt")
	f.Add([]byte("1000-2000 r--p 00000000 08:01 7 /x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func(r *bytes.Reader) ([]Mapping, error){
			func(r *bytes.Reader) ([]Mapping, error) { return ParseMaps(r) },
			func(r *bytes.Reader) ([]Mapping, error) { return ParseSmaps(r) },
		} {
			ms, err := parse(bytes.NewReader(b))
			if err != nil {
				continue
			}
			for _, m := range ms {
				if m.End < m.Start {
					t.Errorf("accepted %+v", m)
				}
			}
		}
	})
}

func FuzzParseStat(f *testing.F) {
	addSeeds(f, "stat.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err == nil && st == nil {
			t.Error("nil Stat without error")
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	addSeeds(f, "status.txt")
	f.Add([]byte(statusSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStatus(bytes.NewReader(b))
		if err == nil && st == nil {
			t.Error("nil Status without error")
		}
	})
}

func FuzzParseFDInfo(f *testing.F) {
	addSeeds(f, "fdinfo_reg.txt", "fdinfo_eventfd.txt", "fdinfo_epoll.txt")
	f.Add([]byte(inotifySample))
	f.Add([]byte(timerfdSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, err := ParseFDInfo(bytes.NewReader(b))
		if err == nil && (fi == nil || fi.Extra == nil) {
			t.Errorf("accepted %+v", fi)
		}
	})
}

func FuzzParseAuxv(f *testing.F) {
	addSeeds(f, "auxv.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseAuxv(b)
		if err == nil && (len(w)%2 != 0 || len(w) == 0 || w[len(w)-2] != 0) {
			t.Errorf("accepted %v", w)
		}
	})
}
