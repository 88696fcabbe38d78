package image

import (
	"strings"
	"testing"
)

// TestValidateChain refuses chain fields a damaged or hostile image may
// carry: a chain beyond MaxChain, a link without an id or checksum, a run
// deeper than the chain, a shared mapping's run held by a parent.
func TestValidateChain(t *testing.T) {
	link := func(c *Checkpoint) {
		c.ID = strings.Repeat("a", 32)
		c.Parent = &ParentLink{Dir: "../1", ID: strings.Repeat("b", 32), Sum: strings.Repeat("c", 64)}
		c.ChainLen = 1
	}
	cases := []struct {
		name   string
		mutate func(c *Checkpoint)
		want   string
	}{
		{"good link", link, ""},
		{"too long", func(c *Checkpoint) { link(c); c.ChainLen = MaxChain + 1 }, "at most 64"},
		{"no parent", func(c *Checkpoint) { c.ChainLen = 2 }, "parent link false"},
		{"bad id", func(c *Checkpoint) { link(c); c.ID = "xyz" }, "not 32 hex"},
		{"own id", func(c *Checkpoint) { link(c); c.Parent.ID = c.ID }, "image's own"},
		{"bad sum", func(c *Checkpoint) { link(c); c.Parent.Sum = "00" }, "not 64 hex"},
		{"no dir", func(c *Checkpoint) { link(c); c.Parent.Dir = "" }, "parent directory"},
		{"deep run", func(c *Checkpoint) { link(c); c.Processes[0].VMAs[1].Pages[0].Depth = 2 }, "in image 2 of a chain of 1"},
		{"negative depth", func(c *Checkpoint) { link(c); c.Processes[0].VMAs[1].Pages[0].Depth = -1 }, "depth -1"},
		{"shared run from parent", func(c *Checkpoint) {
			link(c)
			v := &c.Processes[0].VMAs[1]
			v.Shared, v.Kind = true, KindFile
			v.Pages[0].Depth = 1
		}, "shared"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleCheckpoint()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckChainLink refuses a parent with another id, another manifest
// checksum or a chain that does not shrink by one.
func TestCheckChainLink(t *testing.T) {
	parent := sampleCheckpoint()
	parent.ID = strings.Repeat("b", 32)
	parent.Sum[0] = 1
	child := sampleCheckpoint()
	child.ID = strings.Repeat("a", 32)
	child.ChainLen = 1
	child.Parent = &ParentLink{Dir: "../1", ID: parent.ID, Sum: parent.SumHex()}
	if err := CheckChainLink(child, parent, "p"); err != nil {
		t.Fatal(err)
	}
	parent.Sum[0] = 2
	if err := CheckChainLink(child, parent, "p"); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Fatalf("changed parent: %v", err)
	}
	parent.Sum[0] = 1
	parent.ChainLen = 3
	if err := CheckChainLink(child, parent, "p"); err == nil || !strings.Contains(err.Error(), "images behind it") {
		t.Fatalf("longer chain: %v", err)
	}
}
