package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// procState is what zdtm.py compares before the dump and after the restore of each process:
// the fd numbers and the mappings (range and permissions, adjacent ones with equal permissions
// merged, as zdtm.py merges them).
type procState struct {
	fds  map[string]bool
	maps map[string]bool
}

// visibleState returns the state of pid and all its descendants, by pid.
func visibleState(root int) map[int]procState {
	st := map[int]procState{}
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[0]
		todo = todo[1:]
		if _, seen := st[pid]; seen {
			continue
		}
		st[pid] = procState{fds: fdSet(pid), maps: mapSet(pid)}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					todo = append(todo, c)
				}
			}
		}
	}
	return st
}

// liveTask returns /proc/PID, or /proc/PID/task/TID of a thread still
// running when the leader thread has exited (pthread_exit: the leader's
// fd and maps files are empty then, zdtm pthread02).
func liveTask(pid int) string {
	dir := fmt.Sprintf("/proc/%d", pid)
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] != 'Z' {
			return dir
		}
	}
	tasks, _ := filepath.Glob(dir + "/task/*/stat")
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if i := strings.LastIndexByte(string(b), ')'); err == nil && i > 0 && i+2 < len(b) && b[i+2] != 'Z' {
			return filepath.Dir(t)
		}
	}
	return dir
}

func fdSet(pid int) map[string]bool {
	set := map[string]bool{}
	ents, _ := os.ReadDir(liveTask(pid) + "/fd")
	for _, e := range ents {
		set[e.Name()] = true
	}
	return set
}

func mapSet(pid int) map[string]bool {
	set := map[string]bool{}
	f, err := os.Open(liveTask(pid) + "/maps")
	if err != nil {
		return set
	}
	defer f.Close()
	var start, end uint64
	var perms string
	flush := func() {
		if end != 0 {
			set[fmt.Sprintf("%x-%x %s", start, end, perms)] = true
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		s, e, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		a, _ := strconv.ParseUint(s, 16, 64)
		b, _ := strconv.ParseUint(e, 16, 64)
		if a == end && fields[1] == perms {
			end = b
			continue
		}
		flush()
		start, end, perms = a, b, fields[1]
	}
	flush()
	return set
}

// compareState describes what differs between before and after ("" if nothing).
func compareState(before, after map[int]procState) string {
	var out []string
	for pid, b := range before {
		a, ok := after[pid]
		if !ok {
			out = append(out, fmt.Sprintf("pid %d missing after restore", pid))
			continue
		}
		if lost, extra := setDiff(b.fds, a.fds); lost != "" || extra != "" {
			out = append(out, fmt.Sprintf("pid %d fds lost [%s] new [%s]", pid, lost, extra))
		}
		if lost, extra := setDiff(b.maps, a.maps); lost != "" || extra != "" {
			out = append(out, fmt.Sprintf("pid %d maps lost [%s] new [%s]", pid, lost, extra))
		}
	}
	for pid := range after {
		if _, ok := before[pid]; !ok {
			out = append(out, fmt.Sprintf("pid %d new after restore", pid))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func setDiff(a, b map[string]bool) (lost, extra string) {
	var l, e []string
	for k := range a {
		if !b[k] {
			l = append(l, k)
		}
	}
	for k := range b {
		if !a[k] {
			e = append(e, k)
		}
	}
	sort.Strings(l)
	sort.Strings(e)
	return strings.Join(l, " "), strings.Join(e, " ")
}
