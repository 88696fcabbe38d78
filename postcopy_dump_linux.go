package rtcr

import "github.com/rtcr/rtcr/internal/image"

// postCopyDump is what a post-copy migration's dump reports beyond the
// image: which host process each image pid is (they differ in a tree with
// its own pid namespace), so the source can read the pages the image
// leaves out (image.VMA.Remote) from the frozen processes.
type postCopyDump struct {
	// Hosts maps an image pid to the pid of the frozen process on this
	// host.
	Hosts map[int]int
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
