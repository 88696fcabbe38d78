package rtcr

import (
	"github.com/rtcr/rtcr/internal/attr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/parallel"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/tree"
)

// dumpChecks runs the checks of the frozen tree f (its live processes)
// that come before anything is read from inside or injected, and returns
// the tree's fd index. They only read /proc, so they run side by side
// (each mostly waits for its system calls); the first error in the order
// below wins.
func dumpChecks(f *tree.Frozen, live []int, nested bool) (*files.Tree, error) {
	var fds *files.Tree
	err := parallel.All(
		func() error { return tree.CheckNamespaces(live, nested) },
		func() error { return attr.CheckTree(live, f.Tids) },
		func() error {
			if nested {
				return nil
			}
			// The session and group layout, checked again at the end,
			// is refused here already, before anything is read or
			// injected: a tree of hundreds of processes took minutes to
			// be read for nothing (zdtm session03).
			return planEarly(f.Order)
		},
		func() (err error) { fds, err = files.NewTree(live); return err },
	)
	return fds, err
}

// planEarly checks with tree.Plan that the session and group layout of
// the frozen processes order (parents first) can be recreated, from their
// /proc/PID/stat as collectTree reads it.
func planEarly(order []int) error {
	nodes := make([]tree.Node, 0, len(order))
	for _, pid := range order {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			return err
		}
		nodes = append(nodes, tree.Node{Pid: pid, Ppid: st.Ppid, Pgid: st.Pgrp, Sid: st.Session})
	}
	if _, err := tree.Plan(nodes); err != nil {
		return err
	}
	return checkGhostsGone(nodes)
}
