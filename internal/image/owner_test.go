package image

import (
	"strings"
	"testing"
)

// ownerImage is a checkpoint of a parent (pid 4242) and its child (4243)
// whose second heap run is the parent's (PageRun.Pid).
func ownerImage() *Checkpoint {
	c := sampleCheckpoint()
	parent := c.Processes[0]
	child := parent
	child.Pid, child.Ppid = parent.Pid+1, parent.Pid
	child.Threads = append([]Thread(nil), parent.Threads...)
	for i := range child.Threads {
		child.Threads[i].Tid += 1000
	}
	child.Threads[0].Tid = child.Pid
	child.VMAs = append([]VMA(nil), parent.VMAs...)
	for i := range child.VMAs {
		child.VMAs[i].Pages = append([]PageRun(nil), parent.VMAs[i].Pages...)
	}
	heap := &child.VMAs[1]
	heap.Pages[1].Pid = parent.Pid
	c.Processes = append(c.Processes, child)
	return c
}

// TestValidateOwners accepts a run held by the parent's page file and
// refuses one held by a process not in the image, beyond that page file,
// or on shared memory.
func TestValidateOwners(t *testing.T) {
	c := ownerImage()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid image with a shared run refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Checkpoint)
		want   string
	}{
		{"unknown owner", func(c *Checkpoint) { c.Processes[1].VMAs[1].Pages[1].Pid = 4343 }, "not a live process"},
		{"own pid", func(c *Checkpoint) { c.Processes[1].VMAs[1].Pages[1].Pid = c.Processes[1].Pid }, "held by pid"},
		{"beyond", func(c *Checkpoint) { c.Processes[1].VMAs[1].Pages[1].FileOff = c.Processes[0].PageFileSize }, "beyond the page file of pid"},
		{"shared", func(c *Checkpoint) {
			v := &c.Processes[1].VMAs[1]
			v.Shared, v.Kind = true, KindSharedAnon
		}, "shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ownerImage()
			tc.mutate(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestMovedPagesHolder: a merge moves each page of the old image once,
// into the page file of the process holding it, and gives the pages of a
// process the child no longer has to the first process taking them.
func TestMovedPagesHolder(t *testing.T) {
	c := &Checkpoint{Processes: []Process{
		{Pid: 10, PageFileSize: 2 * PageSize, VMAs: []VMA{{Pages: []PageRun{
			{Addr: 0x1000, Count: 4, FileOff: 0, Depth: 1},
		}}}},
		{Pid: 11, Ppid: 10, PageFileSize: PageSize, VMAs: []VMA{{Pages: []PageRun{
			{Addr: 0x1000, Count: 2, FileOff: PageSize, Depth: 1, Pid: 10}, // inside pid 10's range
			{Addr: 0x5000, Count: 1, FileOff: 3 * PageSize, Depth: 1, Pid: 9},
		}}}},
		{Pid: 12, Ppid: 10, VMAs: []VMA{{Pages: []PageRun{
			{Addr: 0x5000, Count: 2, FileOff: 3 * PageSize, Depth: 1, Pid: 9}, // pid 9 is gone
		}}}},
	}}
	m, err := movedPages(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.moves[10]; len(got) != 1 || got[0].Count != 4 || got[0].newOff != 2*PageSize {
		t.Fatalf("pid 10's pages moved as %+v, want one range of 4 pages after its page file", got)
	}
	if m.holder[9] != 11 {
		t.Fatalf("pages of the gone pid 9 held by %d, want 11 (the first taking them)", m.holder[9])
	}
	if got := m.moves[9]; len(got) != 1 || got[0].Count != 2 || got[0].newOff != PageSize {
		t.Fatalf("pid 9's pages moved as %+v, want one range of 2 pages after pid 11's page file", got)
	}
	if m.pid(9, 11) != 0 || m.pid(9, 12) != 11 || m.pid(10, 11) != 10 || m.pid(10, 10) != 0 {
		t.Fatalf("run owners after the merge: %d %d %d %d", m.pid(9, 11), m.pid(9, 12), m.pid(10, 11), m.pid(10, 10))
	}
	if off := newOffset(m.moves[10], 2*PageSize); off != 4*PageSize {
		t.Fatalf("new offset of pid 10's page at 2 pages: %d", off)
	}
}
