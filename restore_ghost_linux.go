package rtcr

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/rtcr/rtcr/internal/files"
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
	// session: it leads a session too (newGhostSessionLeader); its exit
	// signals its parent, which takes the SIGCHLD back.
	session bool
}

// treeNodes returns the processes of c as tree nodes, in c's order.
func treeNodes(c *image.Checkpoint) []tree.Node {
	nodes := make([]tree.Node, 0, len(c.Processes))
	for i := range c.Processes {
		p := &c.Processes[i]
		nodes = append(nodes, tree.Node{Pid: p.Pid, Ppid: p.Ppid, Pgid: p.Pgid, Sid: p.Sid})
	}
	return nodes
}

// ghostGroups returns the groups of c whose leader is gone, keyed by the
// process (pid) before whose creation its ghost is made (the first of the
// group in creation order: see creationOrder).
func ghostGroups(c *image.Checkpoint) map[int]int {
	nodes := treeNodes(c)
	order := creationOrder(c, tree.BeforeSetsid(nodes))
	sorted := make([]tree.Node, len(order))
	for k, i := range order {
		sorted[k] = nodes[i]
	}
	first := map[int]int{}
	for pgid, pid := range tree.Ghosts(sorted) {
		first[pid] = pgid
	}
	return first
}

// creationOrder returns the indexes of c's processes in the order a
// restore creates them: c's own order (parents first), unless some are
// created before their parent's setsid (before): then breadth first from
// the root, each parent's children in c's order but those first.
func creationOrder(c *image.Checkpoint, before map[int]bool) []int {
	order := make([]int, 0, len(c.Processes))
	if len(before) == 0 {
		for i := range c.Processes {
			order = append(order, i)
		}
		return order
	}
	kids := map[int][]int{}
	for i := 1; i < len(c.Processes); i++ {
		kids[c.Processes[i].Ppid] = append(kids[c.Processes[i].Ppid], i)
	}
	order = append(order, 0)
	for k := 0; k < len(order); k++ {
		ks := kids[c.Processes[order[k]].Pid]
		for _, first := range []bool{true, false} {
			for _, i := range ks {
				if before[c.Processes[i].Pid] == first {
					order = append(order, i)
				}
			}
		}
	}
	return order
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

// newGhostSessionLeader makes the ghost leader of session sid (and of
// its process group sid) as a child of parent, the parent of the
// session's processes outside ones of it, which it then creates with
// CLONE_PARENT. It is forked with SIGCHLD as its exit signal, which
// those processes inherit from it (with CLONE_PARENT a child's exit
// signal is its creator's).
func newGhostSessionLeader(parent *ptrace.Remote, sid int) (*ghostLeader, error) {
	r, err := stub.Fork(parent, sid)
	if err != nil {
		return nil, fmt.Errorf("ghost leader of session %d: %w", sid, err)
	}
	g := &ghostLeader{pgid: sid, r: r, parent: parent, session: true}
	if _, err := r.Syscall(unix.SYS_SETSID); err != nil {
		g.kill()
		return nil, fmt.Errorf("ghost leader of session %d: setsid: %w", sid, err)
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
	if g.session {
		// Its SIGCHLD waits in the parent (blocked while rtcr injects):
		// taken back, before the parent's own pending signals are set.
		return takeSignal(g.parent, unix.SIGCHLD)
	}
	return nil
}

// takeSignal dequeues sig from the signals pending for the stopped stub r
// (rt_sigtimedwait with a zero timeout; none pending is fine).
func takeSignal(r *ptrace.Remote, sig unix.Signal) error {
	var buf [24]byte // sigset (8 bytes), then a zero timespec (16)
	binary.NativeEndian.PutUint64(buf[:8], 1<<(uint(sig)-1))
	addr, err := r.Put(ptrace.ArgOff, buf[:])
	if err != nil {
		return err
	}
	_, err = r.Syscall(unix.SYS_RT_SIGTIMEDWAIT, addr, 0, addr+8, 8)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("take %v back from %d: %w", sig, r.Pid, err)
	}
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

// checkGhostsGone refuses a tree whose group or session without a leader
// in the tree has its leader alive outside it (its id is taken: the
// restore could not make the ghost), e.g. a group of another job.
func checkGhostsGone(nodes []tree.Node) error {
	ids := map[int]string{}
	for pgid := range tree.Ghosts(nodes) {
		ids[pgid] = "process group"
	}
	for sid := range tree.GhostSessions(nodes) {
		ids[sid] = "session"
	}
	for id, what := range ids {
		if unix.Kill(id, 0) != unix.ESRCH {
			return fmt.Errorf("%s %d of the tree is led by process %d, outside the tree (restore recreates a gone leader only): %w", what, id, id, errGhostOutside)
		}
	}
	return nil
}

// errGhostOutside reports a group or session led from outside the tree.
var errGhostOutside = fmt.Errorf("session/process-group layout not supported yet: %w", files.ErrUnsupported)
