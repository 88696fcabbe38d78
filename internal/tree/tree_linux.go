// Package tree finds the processes of a process tree and plans how to
// recreate it: parent before child, session leaders before the members
// they lead, process-group leaders before the members that join them.
package tree

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// ChildMap returns, for every process on the system, its child processes,
// sorted, by scanning /proc/*/stat (which every kernel has; see
// StoppedChildren for the cheaper way).
func ChildMap() (map[int][]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	m := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procfs.ReadStat(pid)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // exited meanwhile (ESRCH: between open and read)
		}
		if err != nil {
			return nil, err
		}
		m[st.Ppid] = append(m[st.Ppid], pid)
	}
	for _, c := range m {
		sort.Ints(c)
	}
	return m, nil
}

// StoppedChildren returns the child processes of each of pids, sorted,
// from /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): reading a few
// files instead of the stat file of every process on the system. The
// kernel documents the files as exact only for a stopped process (its
// children cannot change meanwhile): pids must be frozen. Without the
// files it falls back to ChildMap.
func StoppedChildren(pids []int) (map[int][]int, error) {
	if !haveTaskChildren() {
		return ChildMap()
	}
	m := map[int][]int{}
	for _, pid := range pids {
		kids, err := procfs.ReadChildren(pid)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // killed while frozen, and reaped
		}
		if err != nil {
			return nil, fmt.Errorf("children of %d: %w", pid, err)
		}
		if len(kids) > 0 {
			m[pid] = kids
		}
	}
	return m, nil
}

// Descendants returns root and its descendants as they are now, parents
// first, from /proc/PID/task/TID/children (or one scan of every process
// on kernels without them). The tree runs meanwhile: a process forked or
// reparented during the walk may be missed, so use it only where a later
// check, on the frozen tree, covers what it misses.
func Descendants(root int) ([]int, error) {
	if !haveTaskChildren() {
		m, err := ChildMap()
		if err != nil {
			return nil, err
		}
		pids := []int{root}
		for i := 0; i < len(pids); i++ {
			pids = append(pids, m[pids[i]]...)
		}
		return pids, nil
	}
	pids := []int{root}
	for i := 0; i < len(pids); i++ {
		m, err := StoppedChildren(pids[i : i+1])
		if err != nil {
			return nil, err
		}
		pids = append(pids, m[pids[i]]...)
	}
	return pids, nil
}

// haveTaskChildren reports whether this kernel has
// /proc/PID/task/TID/children (asked once, of rtcr's own thread).
var haveTaskChildren = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/thread-self/children")
	return err == nil
})

// Node is one process of a tree as the plan sees it.
type Node struct {
	Pid, Ppid, Pgid, Sid int
}

// Plan checks that the sessions and process groups of a tree can be
// recreated by creating processes parent-first, each session leader
// calling setsid() and each process calling setpgid() after every process
// exists, and returns the nodes parent-first. nodes[0] is the root, whose
// parent is outside the tree: the restored root gets the restorer's
// session and process group unless it leads its own.
func Plan(nodes []Node) ([]Node, error) {
	if len(nodes) == 0 {
		return nil, errors.New("empty process tree")
	}
	byPid := map[int]Node{}
	for _, n := range nodes {
		byPid[n.Pid] = n
	}
	root := nodes[0]
	children := map[int][]int{}
	for _, n := range nodes[1:] {
		if _, ok := byPid[n.Ppid]; !ok {
			return nil, fmt.Errorf("process %d: parent %d is not in the tree", n.Pid, n.Ppid)
		}
		children[n.Ppid] = append(children[n.Ppid], n.Pid)
	}
	// Parent-first order (breadth first from the root).
	order := []Node{root}
	for i := 0; i < len(order); i++ {
		kids := children[order[i].Pid]
		sort.Ints(kids)
		for _, k := range kids {
			order = append(order, byPid[k])
		}
	}
	if len(order) != len(nodes) {
		return nil, fmt.Errorf("process tree of %d has a cycle or duplicates", root.Pid)
	}
	// Sessions: a process inherits its parent's session unless it leads
	// its own, or the session its parent had before it called setsid
	// (BeforeSetsid: it is created before its parent's setsid); others
	// cannot be repaired.
	if _, err := beforeSetsid(order, byPid); err != nil {
		return nil, err
	}
	// Process groups: setpgid needs the group's leader alive in the same
	// session, or the process itself as the new leader. A group whose
	// leader is gone gets a ghost leader for the time of the restore
	// (Ghosts): all its processes must be in one session, which the
	// ghost cannot lead.
	ghostSid := map[int]int{}
	for _, n := range order {
		if n.Pgid == n.Pid {
			continue
		}
		leader, ok := byPid[n.Pgid]
		if n == root {
			continue // the root's group is outside the tree
		}
		if !ok {
			// The group may come from the root's parent (a shell job):
			// fine if it is the root's group and inherited.
			if n.Pgid == root.Pgid && root.Pgid != root.Pid {
				continue
			}
			if n.Pgid <= 0 {
				return nil, fmt.Errorf("process %d: process group %d has no leader in the tree: %w", n.Pid, n.Pgid, errLayout)
			}
			if n.Pgid == n.Sid {
				continue // the ghost session leader's group (GhostSessions)
			}
			if _, in := byPid[n.Sid]; !in && n.Sid != root.Sid {
				return nil, fmt.Errorf("process %d: process group %d, whose leader is gone, in session %d, whose leader is gone too: %w", n.Pid, n.Pgid, n.Sid, errLayout)
			}
			if s, seen := ghostSid[n.Pgid]; seen && s != n.Sid {
				return nil, fmt.Errorf("process %d: group %d, whose leader is gone, spans sessions %d and %d: %w", n.Pid, n.Pgid, s, n.Sid, errLayout)
			}
			ghostSid[n.Pgid] = n.Sid
			continue
		}
		if leader.Sid != n.Sid {
			return nil, fmt.Errorf("process %d: group %d is in another session: %w", n.Pid, n.Pgid, errLayout)
		}
	}
	return order, nil
}

// BeforeSetsid returns the processes of a tree Plan accepted that are in
// the session their parent had before it called setsid (it forked them,
// then made its own session): restore creates them from their parent
// before that parent's setsid, which it puts off until then.
func BeforeSetsid(nodes []Node) map[int]bool {
	byPid := map[int]Node{}
	for _, n := range nodes {
		byPid[n.Pid] = n
	}
	before, _ := beforeSetsid(nodes, byPid)
	return before
}

// beforeSetsid checks the sessions of nodes (parents first) and returns
// the processes created before their parent's setsid. A session leader
// is created after its parent's setsid: it was born in its parent's final
// session, and the root in one outside the tree.
func beforeSetsid(nodes []Node, byPid map[int]Node) (map[int]bool, error) {
	root := nodes[0]
	// born holds the session each process was created in; the root's is
	// outside the tree and unknown, so it has none. (A session id of 0 is
	// a real one: a session whose leader is outside rtcr's pid namespace.)
	born := map[int]int{}
	before := map[int]bool{}
	ghostParent := map[int]int{}
	for _, n := range nodes[1:] {
		parent := byPid[n.Ppid]
		_, leaderIn := byPid[n.Sid]
		switch {
		case n.Sid == n.Pid:
			born[n.Pid] = parent.Sid
		case n.Sid == parent.Sid:
			born[n.Pid] = n.Sid
		case parent.Sid == parent.Pid && bornKnown(born, parent.Pid, n.Sid):
			born[n.Pid] = n.Sid
			before[n.Pid] = true
		case !leaderIn && n.Sid > 0 && n.Sid != root.Sid:
			// A session whose leader is gone (GhostSessions): its
			// processes outside ones of it must all have one parent.
			if pp, seen := ghostParent[n.Sid]; seen && pp != n.Ppid {
				return nil, fmt.Errorf("process %d: session %d, whose leader is gone, has processes under parents %d and %d: %w", n.Pid, n.Sid, pp, n.Ppid, errLayout)
			}
			ghostParent[n.Sid] = n.Ppid
			born[n.Pid] = n.Sid
		default:
			return nil, fmt.Errorf("process %d: session %d differs from its parent's (%d) and it does not lead it: %w", n.Pid, n.Sid, parent.Sid, errLayout)
		}
	}
	return before, nil
}

// bornKnown reports whether process pid is known to have been created in
// session sid.
func bornKnown(born map[int]int, pid, sid int) bool {
	b, ok := born[pid]
	return ok && b == sid
}

// GhostSessions returns the sessions of a tree Plan accepted whose leader
// is not in the tree (it exited after forking them, with CLONE_PARENT:
// zdtm session02), each with the one parent its processes outside ones
// of it have: restore forks a ghost leader with the session's id from that
// parent, makes it call setsid, creates those processes from it with
// CLONE_PARENT (they get the session and the parent), and ends it once
// the groups are made (its group is the session's, which some of them
// may be in).
func GhostSessions(nodes []Node) map[int]int {
	if len(nodes) == 0 {
		return nil
	}
	root := nodes[0]
	in := map[int]bool{}
	for _, n := range nodes {
		in[n.Pid] = true
	}
	out := map[int]int{}
	for _, n := range nodes[1:] {
		if n.Sid != n.Pid && !in[n.Sid] && n.Sid > 0 && n.Sid != root.Sid {
			if _, seen := out[n.Sid]; !seen {
				out[n.Sid] = n.Ppid
			}
		}
	}
	return out
}

// Ghosts returns the process groups of a tree Plan accepted whose leader
// is not in the tree (it exited; zdtm zombie01): restore creates a
// process with the group's id in the session of the group's first
// process, from that process's parent, lets it lead the group until the
// others have joined, and ends it. The value is the first process of the
// group in nodes' order.
func Ghosts(nodes []Node) map[int]int {
	if len(nodes) == 0 {
		return nil
	}
	root := nodes[0]
	in := map[int]bool{}
	for _, n := range nodes {
		in[n.Pid] = true
	}
	ghosts := map[int]int{}
	for _, n := range nodes[1:] {
		if n.Pgid == n.Pid || in[n.Pgid] || (n.Pgid == root.Pgid && root.Pgid != root.Pid) || n.Pgid == n.Sid {
			continue
		}
		if _, seen := ghosts[n.Pgid]; !seen {
			ghosts[n.Pgid] = n.Pid
		}
	}
	return ghosts
}

// errLayout reports a session or group layout rtcr cannot recreate.
var errLayout = errors.New("session/process-group layout not supported yet")
