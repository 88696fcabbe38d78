package image

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// chainCheckpoint is sampleCheckpoint as the last increment of a pre-copy
// migration of a process with a 1 GiB mapping: n page runs (n/2 pages
// written since its parent, each a run of this image, between runs its
// parent holds), the shape of a real one.
func chainCheckpoint(n int) *Checkpoint {
	c := sampleCheckpoint()
	c.ID = "00112233445566778899aabbccddeeff"
	c.Parent = &ParentLink{Dir: "base", ID: "ffeeddccbbaa99887766554433221100", Sum: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	c.ChainLen = 1
	p := &c.Processes[0]
	const start, pages = 0x7f0000000000, 1 << 18
	rng := rand.New(rand.NewPCG(1, 2))
	dirty := map[uint64]bool{}
	for len(dirty) < n/2 {
		if i := 1 + rng.Uint64N(pages-2); !dirty[i-1] && !dirty[i+1] {
			dirty[i] = true // apart: each one a run between two of the parent's
		}
	}
	v := VMA{Start: start, End: start + pages*PageSize, Prot: unix.PROT_READ | unix.PROT_WRITE, Kind: KindAnon}
	own := p.PageFileSize
	from := uint64(0) // the first page of the parent's run under way
	for i := uint64(0); i < pages; i++ {
		if !dirty[i] {
			continue
		}
		v.Pages = append(v.Pages,
			PageRun{Addr: start + from*PageSize, Count: i - from, FileOff: int64(from * PageSize), Depth: 1},
			PageRun{Addr: start + i*PageSize, Count: 1, FileOff: own})
		own += PageSize
		from = i + 1
	}
	v.Pages = append(v.Pages, PageRun{Addr: start + from*PageSize, Count: pages - from, FileOff: int64(from * PageSize), Depth: 1})
	p.VMAs = append(p.VMAs, v)
	p.PageFileSize = own
	p.PageChecksums = make([]uint32, (own+PageChunkSize-1)/PageChunkSize)
	return c
}

// TestRunsRoundTrip: a checkpoint with runs of every kind (gaps, depths,
// pids, offsets back and forth) is read back from format version 5 as it
// was written, and as it is from its JSON in version 4.
func TestRunsRoundTrip(t *testing.T) {
	for _, c := range []*Checkpoint{sampleCheckpoint(), chainCheckpoint(1000), sharedCheckpoint()} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := WriteManifest(dir, c); err != nil {
			t.Fatal(err)
		}
		got, err := ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		got.Sum, got.Version = c.Sum, c.Version
		if !reflect.DeepEqual(got, c) {
			t.Errorf("version 5 round trip of %d processes differs", len(c.Processes))
		}
		old, err := readBytes(t, buildManifest(4, jsonOf(t, c)))
		if err != nil {
			t.Fatal(err)
		}
		old.Sum, old.Version = c.Sum, c.Version
		if !reflect.DeepEqual(old, c) {
			t.Errorf("version 4 read of %d processes differs", len(c.Processes))
		}
	}
}

// sharedCheckpoint is sampleCheckpoint with a child whose runs are held by
// its parent's page file (PageRun.Pid) and an offset that goes back.
func sharedCheckpoint() *Checkpoint {
	c := sampleCheckpoint()
	child := c.Processes[0]
	child.Pid, child.Ppid = 4243, 4242
	child.Threads = []Thread{c.Processes[0].Threads[0]}
	child.Threads[0].Tid = 4243
	child.PageFile = PageFileName("0123456789abcdef", 4243)
	child.VMAs = append([]VMA(nil), c.Processes[0].VMAs...)
	heap := child.VMAs[1]
	heap.Pages = []PageRun{
		{Addr: 0x1000000, Count: 1, FileOff: 2 * PageSize},
		{Addr: 0x1001000, Count: 1, FileOff: PageSize, Pid: 4242},
		{Addr: 0x1003000, Count: 1, FileOff: 0},
	}
	child.VMAs[1] = heap
	child.VMAs[0].Pages = nil
	child.PageFileSize = 3 * PageSize
	child.PageChecksums = []uint32{0}
	c.Processes = append(c.Processes, child)
	return c
}

// runsOf returns the payload of c's manifest split in its JSON and runs.
func runsOf(t testing.TB, c *Checkpoint) (doc, runs []byte) {
	t.Helper()
	payload, err := marshalPayload(c)
	if err != nil {
		t.Fatal(err)
	}
	doc, runs, err = splitPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	return doc, runs
}

// TestRunsDamaged: a runs section that does not fit the VMAs it describes
// is refused as corrupt, naming what is wrong.
func TestRunsDamaged(t *testing.T) {
	doc, runs := runsOf(t, sampleCheckpoint())
	// sampleCheckpoint's runs: vma 0x400000-0x402000 one run at 0x401000
	// (gap 1, count 1, depth 0, pid 0, skip 0); the heap 0x1000000-0x1004000
	// two runs: (0, 2, 0, 0, 0), (1, 1, 0, 0, 0), at pages 1 and 3 of the
	// page file, each where the previous one ended.
	want := []byte{1, 1, 1, 0, 0, 0, 2, 0, 2, 0, 0, 0, 1, 1, 0, 0, 0}
	if !bytes.Equal(runs, want) {
		t.Fatalf("runs section % x, want % x", runs, want)
	}
	with := func(i int, b ...byte) []byte {
		r := bytes.Clone(runs)
		return append(r[:i], append(b, runs[i+len(b):]...)...)
	}
	cut := func(n int) []byte { return bytes.Clone(runs[:n]) }
	tests := []struct {
		name    string
		payload []byte
		msg     string
	}{
		{"empty section", withJSONLen(doc, nil), "ends inside a number"},
		{"cut in a run", withJSONLen(doc, cut(9)), "more than the 2 bytes left"},
		{"cut before the last vma", withJSONLen(doc, cut(6)), "ends inside a number"},
		{"trailing byte", withJSONLen(doc, append(bytes.Clone(runs), 0)), "1 bytes after the runs"},
		{"more runs than bytes", withJSONLen(doc, with(6, 3)), "more than the"},
		{"huge count", withJSONLen(doc, append(binary.AppendUvarint(nil, 1<<40), runs[1:]...)), "more than the"},
		{"gap past the end", withJSONLen(doc, with(1, 2)), "outside vma"},
		{"run past the end", withJSONLen(doc, with(2, 2)), "outside vma"},
		{"no pages", withJSONLen(doc, with(2, 0)), "no pages"},
		{"second run past the end", withJSONLen(doc, with(12, 0, 3)), "outside vma"},
		{"depth", withJSONLen(doc, with(3, 65)), "depth 65"},
		{"negative offset", withJSONLen(doc, with(5, 1)), "out of range"},
		{"offset too far", withJSONLen(doc, append(append(bytes.Clone(runs[:5]), binary.AppendVarint(nil, maxRunOff+1)...), runs[6:]...)), "out of range"},
		{"not shortest", withJSONLen(doc, append(append(bytes.Clone(runs[:2]), 0x81, 0), runs[3:]...)), "shortest form"},
		{"overflow", withJSONLen(doc, append(append(bytes.Clone(runs[:2]), bytes.Repeat([]byte{0xff}, 10)...), runs[3:]...)), "overflows"},
		{"json length past the end", binary.LittleEndian.AppendUint64(nil, 1<<40), "JSON of"},
		{"short json length", []byte{1, 2, 3}, "shorter than the JSON length"},
		{"runs in the json too", withJSONLen(jsonOf(t, sampleCheckpoint()), runs), "page runs in the JSON"},
		{"runs only in the json", withJSONLen(jsonOf(t, sampleCheckpoint()), nil), "page runs in the JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkRefused(t, buildManifest(FormatVersion, tc.payload), tc.msg)
		})
	}
	// Validate still checks what the section cannot: the page file size.
	_, err := readBytes(t, buildManifest(FormatVersion, withJSONLen(doc, with(16, 2))))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("beyond page file size")) {
		t.Errorf("a run beyond the page file: %v", err)
	}
}

// TestRunsHostileAlloc: a runs section claiming more runs than its bytes
// hold, or more than MaxPageRuns, is refused before they are allocated;
// one that holds the shortest runs allocates no more than a PageRun (40
// bytes) for each 5 bytes.
func TestRunsHostileAlloc(t *testing.T) {
	c := sampleCheckpoint()
	c.Processes[0].VMAs = []VMA{{Start: 0x10000000, End: 0x10000000 + 1<<40, Prot: unix.PROT_READ, Kind: KindAnon}}
	doc, _ := runsOf(t, c)
	shortest := func(n, claim int) []byte {
		runs := binary.AppendUvarint(nil, uint64(claim))
		// 1-page runs one page apart, one after the other in the file.
		return append(runs, bytes.Repeat([]byte{1, 1, 0, 0, 0}, n)...)
	}
	n := 3 << 20 / minRunBytes
	checkRefused(t, buildManifest(FormatVersion, withJSONLen(doc, shortest(n, n+1))), "more than the")
	checkRefused(t, buildManifest(FormatVersion, withJSONLen(doc, shortest(MaxPageRuns+1, MaxPageRuns+1))), "limit of")

	data := buildManifest(FormatVersion, withJSONLen(doc, shortest(n, n)))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readManifest(bytes.NewReader(data), int64(len(data)), "x/"+ManifestName)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "beyond page file size") {
		t.Fatalf("runs beyond the page file: %v", err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d runs in %d bytes: %d MiB allocated", n, len(data), alloc>>20)
	if limit := 8*uint64(len(data)) + 4<<20; alloc > limit {
		t.Errorf("allocated %d bytes for a %d-byte manifest", alloc, len(data))
	}
}

// FuzzRunsSection fuzzes the runs section of a version 5 manifest behind
// the JSON of chainCheckpoint(40): the reader either refuses it with an
// image error or returns a checkpoint that passed Validate.
//
//	go test -run X -fuzz FuzzRunsSection -fuzztime 1m ./internal/image/
func FuzzRunsSection(f *testing.F) {
	doc, runs := runsOf(f, chainCheckpoint(40))
	f.Add(runs)
	_, sample := runsOf(f, sampleCheckpoint())
	f.Add(sample)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, runs []byte) {
		data := buildManifest(FormatVersion, withJSONLen(doc, runs))
		c, err := readManifest(bytes.NewReader(data), int64(len(data)), "fuzz/"+ManifestName)
		checkReadResult(t, c, err)
	})
}

// BenchmarkManifestRuns encodes (Validate, JSON, runs, SHA-256) and reads
// back (checksum, JSON, runs, Validate) the manifest of chainCheckpoint:
// 13,000 page runs, as after the pre-copy rounds of a 1 GiB process.
// "v4" is the same manifest with its runs in the JSON, as format version 4
// wrote it (marshalCheckpoint, then read through the same reader).
func BenchmarkManifestRuns(b *testing.B) {
	benchmarkEncodings(b, chainCheckpoint(13000))
}

// benchmarkEncodings times the encoding and reading of c's manifest in
// format 5 and in format 4.
func benchmarkEncodings(b *testing.B, c *Checkpoint) {
	v5 := func() []byte {
		write, _, err := encodeManifest("x", c)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}
	v4 := func() []byte {
		if err := c.Validate(); err != nil {
			b.Fatal(err)
		}
		payload, err := marshalCheckpoint(c)
		if err != nil {
			b.Fatal(err)
		}
		return buildManifest(4, payload) // its SHA-256 as the encoder's
	}
	for _, f := range []struct {
		name   string
		encode func() []byte
	}{{"v5", v5}, {"v4", v4}} {
		data := f.encode()
		b.Run(f.name+"/encode", func(b *testing.B) {
			for b.Loop() {
				f.encode()
			}
			b.ReportMetric(float64(len(data)), "bytes")
		})
		b.Run(f.name+"/read", func(b *testing.B) {
			for b.Loop() {
				if _, err := readManifest(bytes.NewReader(data), int64(len(data)), "x"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
