package tree

import (
	"os"
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
		{"session neither inherited nor led", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 11, Sid: 3},
		}, nil, true},
		{"group leader missing", []Node{
			{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10},
			{Pid: 11, Ppid: 10, Pgid: 42, Sid: 10},
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
	if err := CheckNamespaces(os.Getpid(), false); err != nil {
		t.Fatalf("rtcr's own namespaces refused: %v", err)
	}
}
