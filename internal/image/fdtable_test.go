package image

import (
	"strings"
	"testing"
)

// TestValidateFDTables: a process sharing another's fd table names an
// earlier live process with a table of its own that its parent is or
// shares, and has no fds of its own.
func TestValidateFDTables(t *testing.T) {
	base := func() []Process {
		return []Process{
			{Pid: 10, Ppid: 1},
			{Pid: 11, Ppid: 10, FDTableOf: 10},
			{Pid: 12, Ppid: 11, FDTableOf: 10},
			{Pid: 13, Ppid: 11},
		}
	}
	tests := []struct {
		name   string
		mutate func(ps []Process)
		msg    string
	}{
		{"valid", func(ps []Process) {}, ""},
		{"unknown table", func(ps []Process) { ps[1].FDTableOf = 99 }, "not an earlier live process"},
		{"table of a later process", func(ps []Process) { ps[1].FDTableOf = 13 }, "not an earlier live process"},
		{"table of a sharer", func(ps []Process) { ps[2].FDTableOf = 11 }, "not an earlier live process"},
		{"fds of its own", func(ps []Process) { ps[1].FDs = []FD{{Num: 3}} }, "fds of its own"},
		{"zombie", func(ps []Process) { ps[1].Zombie = true }, "not an earlier live process"},
		{"parent does not share it", func(ps []Process) { ps[3].FDTableOf = 10 }, "its parent 11 does not share"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := base()
			if tt.name == "parent does not share it" {
				ps[2].FDTableOf, ps[1].FDTableOf = 0, 0
			}
			tt.mutate(ps)
			err := validateFDTables(ps)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("validateFDTables() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("validateFDTables() = %v, want an error naming %q", err, tt.msg)
			}
		})
	}
}
