package image

import (
	"errors"
	"strings"
	"testing"
)

// remoteSample is sampleCheckpoint as a post-copy image: its heap's pages
// left with the source.
func remoteSample() *Checkpoint {
	c := sampleCheckpoint()
	c.RemotePages = true
	p := &c.Processes[0]
	for i := range p.VMAs {
		if v := &p.VMAs[i]; v.Kind == KindHeap {
			v.Pages = nil
			v.Remote = []PageSpan{{Addr: v.Start, Count: 2}, {Addr: v.Start + 3*PageSize, Count: 1}}
		}
	}
	return c
}

func heap(c *Checkpoint) *VMA {
	p := &c.Processes[0]
	for i := range p.VMAs {
		if p.VMAs[i].Kind == KindHeap {
			return &p.VMAs[i]
		}
	}
	panic("no heap")
}

// TestValidateRemote: remote spans are refused anywhere but sorted,
// disjoint, page-aligned inside a private anonymous mapping without saved
// runs of an image marked RemotePages.
func TestValidateRemote(t *testing.T) {
	if err := remoteSample().Validate(); err != nil {
		t.Fatalf("valid post-copy image refused: %v", err)
	}
	cases := []struct {
		name, want string
		edit       func(c *Checkpoint)
	}{
		{"unmarked", "not marked", func(c *Checkpoint) { c.RemotePages = false }},
		{"empty", "empty or not page-aligned", func(c *Checkpoint) { heap(c).Remote[0].Count = 0 }},
		{"unaligned", "empty or not page-aligned", func(c *Checkpoint) { heap(c).Remote[0].Addr++ }},
		{"outside", "outside vma", func(c *Checkpoint) { heap(c).Remote[1].Count = 2 }},
		{"huge", "outside vma", func(c *Checkpoint) { heap(c).Remote[1].Count = 1 << 62 }},
		{"overlap", "overlaps", func(c *Checkpoint) { heap(c).Remote[1].Addr = heap(c).Start + PageSize }},
		{"with runs", "saved pages in one mapping", func(c *Checkpoint) {
			heap(c).Pages = []PageRun{{Addr: heap(c).Start + 2*PageSize, Count: 1}}
		}},
		{"shared", "private anonymous memory only", func(c *Checkpoint) { heap(c).Shared = true }},
		{"file", "private anonymous memory only", func(c *Checkpoint) {
			v := &c.Processes[0].VMAs[0]
			v.Pages, v.Remote = nil, []PageSpan{{Addr: v.Start, Count: 1}}
		}},
		{"incremental", "incremental image", func(c *Checkpoint) {
			c.Parent, c.ChainLen = &ParentLink{Dir: "../p"}, 1
		}},
	}
	for _, tc := range cases {
		c := remoteSample()
		tc.edit(c)
		err := c.Validate()
		if err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a corrupt image error with %q", tc.name, err, tc.want)
		}
	}
}
