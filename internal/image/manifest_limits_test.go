package image

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestManifestCounts checks that payloads whose counts exceed the caps
// are refused quickly with bounded memory, before decoding, however the
// keys are spelled.
func TestManifestCounts(t *testing.T) {
	many := func(prefix, elem string, n int, suffix string) []byte {
		var b bytes.Buffer
		b.WriteString(prefix)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(elem)
		}
		b.WriteString(suffix)
		return b.Bytes()
	}
	proc := `{"Arch":"x86_64","Processes":[{"Pid":1,`
	tests := []struct {
		name    string
		payload []byte
		msg     string
	}{
		// 10^6 threads: 17 MB, formerly 54 s and 1.5 GiB to inspect.
		{"a million threads", many(proc+`"Threads":[`, `{"Tid":1,"Name":"x"}`, 1_000_000, `]}]}`), "more than 32768 Threads"},
		{"empty thread objects", many(proc+`"Threads":[`, `{}`, MaxThreads+1, `]}]}`), "more than 32768 Threads"},
		{"key in another case", many(proc+`"threads":[`, `{}`, MaxThreads+1, `]}]}`), "more than 32768 Threads"},
		{"key with an escape", many(proc+`"Thr\u0065ads":[`, `{}`, MaxThreads+1, `]}]}`), "more than 32768 Threads"},
		{"fds", many(`{"Arch":"x86_64","Processes":[{"Pid":1,"FDs":[`, `{}`, MaxFDs+1, `]}]}`), "more than 262144 FDs"},
		{"processes", many(`{"Arch":"x86_64","Processes":[`, `{}`, MaxProcesses+1, `]}`), "more than 4096 Processes"},
		{"objects", many(proc+`"Rlimits":[`, `{}`, MaxObjects, `]}]}`), "more than 2097152 objects"},
		{"nesting", []byte(proc + `"Rlimits":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`), "nesting deeper"},
	}
	for _, tc := range tests {
		for _, v := range []uint32{4, FormatVersion} {
			t.Run(fmt.Sprintf("%s/v%d", tc.name, v), func(t *testing.T) {
				payload := tc.payload
				if v >= runsVersion {
					payload = withJSONLen(payload, nil)
				}
				checkRefused(t, buildManifest(v, payload), tc.msg)
			})
		}
	}
}

// checkRefused checks that the manifest data is refused, with an
// ErrCorrupt containing msg, quickly and with bounded memory.
func checkRefused(t *testing.T, data []byte, msg string) {
	t.Helper()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	c, err := readManifest(bytes.NewReader(data), int64(len(data)), "x/"+ManifestName)
	if c != nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("read = %v, want an ErrCorrupt containing %q", err, msg)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d-byte manifest refused in %v, %d MiB allocated: %v", len(data), time.Since(start), alloc>>20, err)
	if limit := uint64(len(data)) + 16<<20; alloc > limit {
		t.Errorf("allocated %d bytes for a %d-byte manifest", alloc, len(data))
	}
}
