package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// plainRun is PageRun without its UnmarshalJSON: encoding/json's own.
type plainRun struct {
	Addr    uint64
	Count   uint64
	FileOff int64
	Depth   int `json:",omitempty"`
	Pid     int `json:",omitempty"`
}

func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// TestPageRunJSON: a list of page runs decodes to the same values, or
// fails, exactly as encoding/json decodes it without the fast path.
func TestPageRunJSON(t *testing.T) {
	runs := []string{
		`{"Addr":4096,"Count":1,"FileOff":0}`,
		`{"Addr":140736236171264,"Count":26,"FileOff":0,"Depth":1}`,
		`{"Addr":18446744073709551615,"Count":18446744073709551615,"FileOff":9223372036854775807,"Depth":2,"Pid":7}`,
		`{"Addr":1,"Count":2,"FileOff":-3,"Depth":-1,"Pid":-2}`,
		`{"Addr":1,"Count":2,"FileOff":3,"Pid":9}`,
		`{"Addr":1,"Count":2,"FileOff":-0}`,
		`{"Addr":18446744073709551616,"Count":1,"FileOff":0}`, // overflow
		`{"Addr":1,"Count":1,"FileOff":9223372036854775808}`,
		`{"Addr":-1,"Count":1,"FileOff":0}`,
		`{"Addr":01,"Count":1,"FileOff":0}`,
		`{"Addr":1.0,"Count":1,"FileOff":0}`,
		`{"Addr":1e3,"Count":1,"FileOff":0}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Depth":1.5}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Extra":1}`, // unknown field
		`{"Addr":1,"Count":1}`,
		`{"Count":1,"Addr":1,"FileOff":0}`,
		`{ "Addr":1,"Count":1,"FileOff":0}`,
		`{"Addr":1 ,"Count":1,"FileOff":0}`,
		`{"addr":1,"Count":1,"FileOff":0}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Addr":5}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Pid":1,"Depth":2}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Depth":1,"Depth":2}`,
		`{"Addr":"1","Count":1,"FileOff":0}`,
		`{"Addr":1,"Count":1,"FileOff":0,"Depth":null}`,
		`{}`,
		`null`,
		`[]`,
		`1`,
	}
	for _, r := range runs {
		doc := fmt.Sprintf(`[%s,%s]`, r, r)
		var fast []PageRun
		var slow []plainRun
		ferr := decodeStrict(doc, &fast)
		serr := decodeStrict(doc, &slow)
		if (ferr == nil) != (serr == nil) {
			t.Errorf("%s: fast path error %v, encoding/json's %v", r, ferr, serr)
			continue
		}
		if ferr != nil {
			continue
		}
		want := make([]PageRun, len(slow))
		for i, s := range slow {
			want[i] = PageRun(s)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Errorf("%s: fast path %+v, encoding/json %+v", r, fast, want)
		}
	}
	// Whole lists, as a VMA's Pages.
	lists := []string{`[]`, `null`, `[{"Addr":1,"Count":1,"FileOff":0}]`,
		`[{"Addr":1,"Count":1,"FileOff":0},{"Addr":2,"Count":1,"FileOff":4096,"Depth":1}]`,
		`[{"Addr":1,"Count":1,"FileOff":0},]`, `[,{"Addr":1,"Count":1,"FileOff":0}]`,
		`[{"Addr":1,"Count":1,"FileOff":0}{"Addr":1,"Count":1,"FileOff":0}]`,
		`[{"Addr":1,"Count":1,"FileOff":0}, {"Addr":2,"Count":1,"FileOff":0}]`,
		`[{"Addr":1,"Count":1,"FileOff":0},{"Addr":2,"Count":1,"FileOff":0,"X":{}}]`,
		`[{"Addr":1,"Count":1,"FileOff":0},{"Addr":2,"Count":1.5,"FileOff":0}]`,
		`[{"Addr":1,"Count":1,"FileOff":0},null]`, `[1]`, `{}`, `"x"`,
	}
	for _, l := range lists {
		doc := `{"Pages":` + l + `}`
		var fast struct{ Pages PageRuns }
		var slow struct{ Pages []plainRun }
		ferr := decodeStrict(doc, &fast)
		serr := decodeStrict(doc, &slow)
		if (ferr == nil) != (serr == nil) {
			t.Errorf("%s: fast path error %v, encoding/json's %v", l, ferr, serr)
			continue
		}
		if ferr != nil {
			continue
		}
		if (fast.Pages == nil) != (slow.Pages == nil) || len(fast.Pages) != len(slow.Pages) {
			t.Errorf("%s: fast path %#v, encoding/json %#v", l, fast.Pages, slow.Pages)
			continue
		}
		for i := range slow.Pages {
			if fast.Pages[i] != PageRun(slow.Pages[i]) {
				t.Errorf("%s: run %d: fast path %+v, encoding/json %+v", l, i, fast.Pages[i], slow.Pages[i])
			}
		}
	}
	// What the encoder writes is what the fast path reads.
	in := []PageRun{{Addr: 1 << 47, Count: 3, FileOff: 8192}, {Addr: 4096, Count: 1, FileOff: 0, Depth: 2, Pid: 5}, {Addr: 0, Count: 0, FileOff: -4096, Pid: 1}}
	for _, r := range in {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var got PageRun
		if !parsePageRun(b, &got) || got != r {
			t.Errorf("%s: fast path read %+v, want %+v", b, got, r)
		}
	}
	b, err := json.Marshal(PageRuns(in))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := parsePageRuns(b); !ok || !reflect.DeepEqual(got, PageRuns(in)) {
		t.Errorf("%s: fast path read %+v (%v), want %+v", b, got, ok, in)
	}
}

// TestPageRunsHostileAlloc: a manifest whose page runs are one string of
// braces is refused without allocating more than a few times its size
// (the runs were sized by counting braces: 40 bytes a brace, 640 MiB for
// this 16 MiB input).
func TestPageRunsHostileAlloc(t *testing.T) {
	payload := []byte(`{"Pages":["` + strings.Repeat("}", 16<<20) + `"]}`)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var got struct{ Pages PageRuns }
	err := json.Unmarshal(payload, &got)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a string of braces was accepted as page runs")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4*uint64(len(payload)) {
		t.Fatalf("refusing %d bytes allocated %d MiB", len(payload), n>>20)
	}
}
