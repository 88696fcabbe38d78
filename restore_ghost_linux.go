package rtcr

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/stub"
	"github.com/rtcr/rtcr/internal/tree"
	"golang.org/x/sys/unix"
)

// ghostLeader is a process a restore makes to lead a process group whose
// leader was gone at the dump (tree.Ghosts): it has the group's id,
// makes the group, and exits once the group's processes have joined it,
// reaped by its parent (a process of the tree) before that one runs.
type ghostLeader struct {
	pgid   int
	r      *ptrace.Remote
	parent *ptrace.Remote
	done   bool
}

// ghostGroups returns the groups of c whose leader is gone, keyed by the
// process (pid) before whose creation its ghost is made.
func ghostGroups(c *image.Checkpoint) map[int]int {
	var nodes []tree.Node
	for i := range c.Processes {
		p := &c.Processes[i]
		nodes = append(nodes, tree.Node{Pid: p.Pid, Ppid: p.Ppid, Pgid: p.Pgid, Sid: p.Sid})
	}
	first := map[int]int{}
	for pgid, pid := range tree.Ghosts(nodes) {
		first[pid] = pgid
	}
	return first
}

// newGhostLeader makes the ghost leader of group pgid as a child of parent
// (the stub of the parent of the group's first process, in the group's
// session) and makes it lead its own group. Its exit sends no signal.
func newGhostLeader(parent *ptrace.Remote, pgid int) (*ghostLeader, error) {
	r, err := stub.ForkQuiet(parent, pgid)
	if err != nil {
		return nil, fmt.Errorf("ghost leader of process group %d: %w", pgid, err)
	}
	g := &ghostLeader{pgid: pgid, r: r, parent: parent}
	if _, err := r.Syscall(unix.SYS_SETPGID, 0, 0); err != nil {
		g.kill()
		return nil, fmt.Errorf("ghost leader of process group %d: setpgid(0, 0): %w", pgid, err)
	}
	return g, nil
}

// end makes the ghost exit and its parent reap it (wait4 with __WALL, as
// it has no exit signal): the group lives on in its other processes.
func (g *ghostLeader) end() error {
	if err := stub.Exit(g.r, 0); err != nil {
		return fmt.Errorf("ghost leader of process group %d: %w", g.pgid, err)
	}
	got, err := g.parent.Syscall(unix.SYS_WAIT4, uint64(g.r.NsPid), 0, unix.WALL, 0)
	if err != nil || int(got) != g.r.NsPid {
		return fmt.Errorf("ghost leader of process group %d: reap in %d: %d, %w", g.pgid, g.parent.Pid, got, err)
	}
	g.done = true
	return nil
}

// kill ends a ghost left by a failed restore (its parent, killed too,
// leaves it to be reaped by whoever inherits it).
func (g *ghostLeader) kill() {
	if !g.done {
		ptrace.Kill(g.r.Pid)
		g.done = true
	}
}
