package rtcr

import (
	"errors"

	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
)

// postCopyDump is what a post-copy migration's dump reports beyond the
// image: which host process each image pid is (they differ in a tree with
// its own pid namespace), so the source can read the pages the image
// leaves out (image.VMA.Remote) from the frozen processes.
type postCopyDump struct {
	// Hosts maps an image pid to the pid of the frozen process on this
	// host.
	Hosts map[int]int
	// Abort, set by a handoff that fails after the destination's copy
	// ran, ends the tree's established connections before it runs on
	// (files.Tree.AbortConnections).
	Abort bool
}

// release is fds.ReleaseNetwork(false) for a tree about to run on,
// after aborting its connections when the handoff asked so (Abort);
// pc may be nil (not a post-copy).
func (pc *postCopyDump) release(fds *files.Tree) error {
	var aerr error
	if pc != nil && pc.Abort {
		aerr = fds.AbortConnections()
	}
	return errors.Join(aerr, fds.ReleaseNetwork(false))
}

// hostPids returns the pids of c's processes as read (host pids, before
// toNamespaceIDs), nil without post-copy.
func (pc *postCopyDump) hostPids(c *image.Checkpoint) []int {
	if pc == nil {
		return nil
	}
	hosts := make([]int, len(c.Processes))
	for i := range c.Processes {
		hosts[i] = c.Processes[i].Pid
	}
	return hosts
}

// record marks c as a post-copy image and maps its (image) pids to hosts,
// the host pids in the same order.
func (pc *postCopyDump) record(c *image.Checkpoint, hosts []int) {
	if pc == nil {
		return
	}
	c.RemotePages = true
	pc.Hosts = make(map[int]int, len(hosts))
	for i := range c.Processes {
		pc.Hosts[c.Processes[i].Pid] = hosts[i]
	}
}
