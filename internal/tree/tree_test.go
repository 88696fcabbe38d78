package tree

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []Node
		order   []int
		wantErr bool
	}{
		{"single", []Node{{Pid: 10, Ppid: 1, Pgid: 10, Sid: 5}}, []int{10}, false},
		{"shell pipeline", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 5},
			{Pid: 12, Ppid: 10, Pgid: 10, Sid: 5},
			{Pid: 11, Ppid: 10, Pgid: 10, Sid: 5},
		}, []int{10, 11, 12}, false},
		{"grandchildren breadth first", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 10, Sid: 10},
			{Pid: 13, Ppid: 11, Pgid: 13, Sid: 10},
			{Pid: 12, Ppid: 10, Pgid: 12, Sid: 12},
		}, []int{10, 11, 12, 13}, false},
		{"child in the root's foreign group", []Node{
			{Pid: 10, Ppid: 1, Pgid: 7, Sid: 5},
			{Pid: 11, Ppid: 10, Pgid: 7, Sid: 5},
		}, []int{10, 11}, false},
		{"parent outside the tree", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 5},
			{Pid: 11, Ppid: 99, Pgid: 10, Sid: 5},
		}, nil, true},
		{"session whose leader is gone (a ghost leads it)", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 3},
			{Pid: 12, Ppid: 10, Pgid: 3, Sid: 3},
			{Pid: 13, Ppid: 11, Pgid: 11, Sid: 3},
		}, []int{10, 11, 12, 13}, false},
		{"session whose leader is gone under two parents", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
			{Pid: 12, Ppid: 10, Pgid: 3, Sid: 3},
			{Pid: 13, Ppid: 11, Pgid: 3, Sid: 3},
		}, nil, true},
		{"group whose leader is gone in a session whose leader is gone", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 4, Sid: 3},
		}, nil, true},
		{"child left in its parent's old session (parent setsid after the fork)", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
			{Pid: 12, Ppid: 11, Pgid: 10, Sid: 10},
			{Pid: 13, Ppid: 11, Pgid: 11, Sid: 11},
		}, []int{10, 11, 12, 13}, false},
		{"child in the root's session from before the root's setsid", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 8, Sid: 7},
		}, nil, true},
		{"grandchild in its grandparent's old session", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
			{Pid: 12, Ppid: 11, Pgid: 12, Sid: 12},
			{Pid: 13, Ppid: 12, Pgid: 10, Sid: 10},
		}, nil, true},
		{"group leader gone (a ghost leads it)", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 42, Sid: 10},
			{Pid: 12, Ppid: 10, Pgid: 42, Sid: 10},
		}, []int{10, 11, 12}, false},
		{"group of the session's leader, gone", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
			{Pid: 12, Ppid: 11, Pgid: 11, Sid: 11},
			{Pid: 13, Ppid: 12, Pgid: 3, Sid: 3},
		}, []int{10, 11, 12, 13}, false},
		{"group whose leader is gone in two sessions", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 42, Sid: 10},
			{Pid: 12, Ppid: 10, Pgid: 12, Sid: 12},
			{Pid: 13, Ppid: 12, Pgid: 42, Sid: 12},
		}, nil, true},
		{"group in another session", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
			{Pid: 12, Ppid: 11, Pgid: 10, Sid: 11},
		}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			order, err := Plan(tc.nodes)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var got []int
			for _, n := range order {
				got = append(got, n.Pid)
			}
			if len(got) != len(tc.order) {
				t.Fatalf("order %v, want %v", got, tc.order)
			}
			for i := range got {
				if got[i] != tc.order[i] {
					t.Fatalf("order %v, want %v", got, tc.order)
				}
			}
		})
	}
}

// TestGhosts: a group whose leader is not in the tree gets one ghost,
// created from its first process's parent; the root's inherited group
// and groups led in the tree get none.
func TestGhosts(t *testing.T) {
	nodes := []Node{
		{Pid: 10, Ppid: 1, Pgid: 7, Sid: 5},
		{Pid: 11, Ppid: 10, Pgid: 7, Sid: 5},
		{Pid: 12, Ppid: 10, Pgid: 12, Sid: 5},
		{Pid: 13, Ppid: 12, Pgid: 42, Sid: 5},
		{Pid: 14, Ppid: 10, Pgid: 42, Sid: 5},
		{Pid: 15, Ppid: 10, Pgid: 12, Sid: 5},
	}
	if _, err := Plan(nodes); err != nil {
		t.Fatal(err)
	}
	g := Ghosts(nodes)
	if len(g) != 1 || g[42] != 13 {
		t.Fatalf("Ghosts = %v, want map[42:13]", g)
	}
}

// TestBeforeSetsid: a child in the session its parent left by setsid is
// created before that setsid; others are not. The session may be 0: one
// whose leader is outside rtcr's pid namespace (CI runs the tests so).
func TestBeforeSetsid(t *testing.T) {
	for _, sid := range []int{5, 0} {
		t.Run(fmt.Sprintf("root in session %d", sid), func(t *testing.T) {
			nodes := []Node{
				{Pid: 10, Ppid: 1, Pgid: 10, Sid: sid},
				{Pid: 11, Ppid: 10, Pgid: 11, Sid: 11},
				{Pid: 12, Ppid: 11, Pgid: 10, Sid: sid},
				{Pid: 13, Ppid: 11, Pgid: 11, Sid: 11},
			}
			if _, err := Plan(nodes); err != nil {
				t.Fatal(err)
			}
			b := BeforeSetsid(nodes)
			if len(b) != 1 || !b[12] {
				t.Fatalf("BeforeSetsid = %v, want map[12:true]", b)
			}
		})
	}
}

// TestGhostSessions: a session whose leader is not in the tree gets one
// ghost, forked from the one parent of its processes outside ones of it;
// its group is not a ghost group.
func TestGhostSessions(t *testing.T) {
	nodes := []Node{
		{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
		{Pid: 11, Ppid: 10, Pgid: 3, Sid: 3},
		{Pid: 12, Ppid: 10, Pgid: 12, Sid: 3},
		{Pid: 13, Ppid: 12, Pgid: 3, Sid: 3},
	}
	if _, err := Plan(nodes); err != nil {
		t.Fatal(err)
	}
	if g := GhostSessions(nodes); len(g) != 1 || g[3] != 10 {
		t.Fatalf("GhostSessions = %v, want map[3:10]", g)
	}
	if g := Ghosts(nodes); len(g) != 0 {
		t.Fatalf("Ghosts = %v, want none", g)
	}
}

func TestChildMapFindsOurParent(t *testing.T) {
	m, err := ChildMap()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range m[os.Getppid()] {
		if c == os.Getpid() {
			found = true
		}
	}
	if !found {
		t.Fatalf("ChildMap()[%d] = %v does not contain this process %d", os.Getppid(), m[os.Getppid()], os.Getpid())
	}
}

func TestCheckNamespacesSelf(t *testing.T) {
	if err := CheckNamespaces([]int{os.Getpid()}, false); err != nil {
		t.Fatalf("rtcr's own namespaces refused: %v", err)
	}
}

// TestRootRefusesThread: the id of a thread that is not its process's
// leader (here one of this test's own runtime threads) is refused, naming
// the process.
func TestRootRefusesThread(t *testing.T) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, e := range ents {
		if n, _ := strconv.Atoi(e.Name()); n != os.Getpid() {
			tid = n
		}
	}
	if tid == 0 {
		t.Skip("this test process has one thread only")
	}
	_, _, err = Root(tid)
	want := fmt.Sprintf("%d is a thread of process %d", tid, os.Getpid())
	if !errors.Is(err, ErrThread) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Root(%d) error %v, want ErrThread saying %q", tid, err, want)
	}
	if root, _, err := Root(os.Getpid()); err != nil || root != os.Getpid() {
		t.Fatalf("Root(own pid %d) = %d, %v", os.Getpid(), root, err)
	}
}
