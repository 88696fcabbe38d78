package image

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestMarshalCheckpointSameBytes: the processes encoded side by side give
// json.Marshal's bytes exactly (the manifest's checksum is over them), for
// none, one and several processes, with strings JSON escapes.
func TestMarshalCheckpointSameBytes(t *testing.T) {
	oom := -17
	proc := func(pid int) Process {
		return Process{
			Pid: pid, Ppid: 1, Pgid: pid, Sid: 1, Comm: "a<b>&\"c\"", Exe: "/bin/é\u2028x",
			Cwd: "/tmp", Rlimits: []Rlimit{{}}, OomScoreAdj: &oom,
			FDs:     []FD{{Num: 3, Kind: "file", Path: "/tmp/\x00odd\n", Flags: 2}},
			Threads: []Thread{{Tid: pid, XState: bytes.Repeat([]byte{1, 2, 3}, 300), Name: "t"}},
			VMAs:    []VMA{{Start: 0x1000, End: 0x2000}},
		}
	}
	for _, n := range []int{0, 1, 2, 3, 7} {
		c := &Checkpoint{Kernel: "k", Arch: "x86_64", ID: "id"}
		for i := range n {
			c.Processes = append(c.Processes, proc(100+i))
		}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalCheckpoint(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d processes: side by side\n%s\nwant\n%s", n, got, want)
		}
	}
}
