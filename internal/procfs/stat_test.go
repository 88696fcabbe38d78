package procfs

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseStatRecorded(t *testing.T) {
	st, err := ParseStat(readTestdata(t, "stat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 3317, Comm: "a b) c", State: 'R', Ppid: 3274, Pgrp: 3274, Session: 1798, Tpgid: -1,
		NumThreads: 1, StartTime: 21405,
		StartCode: 94042102456320, EndCode: 94042102456661, StartStack: 140727889035792,
		StartData: 94042102468016, EndData: 94042102468632, StartBrk: 94042969497600,
		ArgStart: 140727889037469, ArgEnd: 140727889037520,
		EnvStart: 140727889037520, EnvEnd: 140727889039311}
	if *st != want {
		t.Errorf("got %+v\nwant %+v", *st, want)
	}
}

// statTail is fields 3..52 of a stat line, with field n holding n*10 for
// the fields ParseStat reads as numbers.
func statTail() []string {
	f := make([]string, 50)
	for i := range f {
		f[i] = "0"
	}
	f[0] = "S"
	for _, n := range []int{4, 5, 6, 20, 22, 26, 27, 28, 45, 46, 47, 48, 49, 50, 51} {
		f[n-3] = strconv.Itoa(n * 10)
	}
	return f
}

func TestParseStatComm(t *testing.T) {
	tail := strings.Join(statTail(), " ")
	tests := []struct{ comm string }{
		{"a b) c"}, {")"}, {"(("}, {"))"}, {""}, {"x) S 1 2 3"}, {"  "}, {"kworker/0:1-events"},
	}
	for _, tt := range tests {
		st, err := ParseStat([]byte("42 (" + tt.comm + ") " + tail + "\n"))
		if err != nil {
			t.Errorf("comm %q: %v", tt.comm, err)
			continue
		}
		want := Stat{Pid: 42, Comm: tt.comm, State: 'S', Ppid: 40, Pgrp: 50, Session: 60,
			NumThreads: 200, StartTime: 220, StartCode: 260, EndCode: 270, StartStack: 280,
			StartData: 450, EndData: 460, StartBrk: 470, ArgStart: 480, ArgEnd: 490,
			EnvStart: 500, EnvEnd: 510}
		if *st != want {
			t.Errorf("comm %q: got %+v", tt.comm, *st)
		}
	}
}

func TestParseStatMalformed(t *testing.T) {
	full := statTail()
	tail := strings.Join(full, " ")
	bad := func(n int, v string) string {
		f := append([]string(nil), full...)
		f[n-3] = v
		return "1 (x) " + strings.Join(f, " ")
	}
	tests := []struct{ name, in, errPart string }{
		{"empty", "", "parentheses"},
		{"no open", "1 x) " + tail, "parentheses"},
		{"no close", "1 (x " + tail, "parentheses"},
		{"close before open", "1 )x( " + tail, "parentheses"},
		{"bad pid", "x (x) " + tail, "field 1"},
		{"truncated", "1 (x) " + strings.Join(full[:48], " "), "fields"},
		{"only comm", "1 (x)", "fields"},
		{"bad state", bad(3, "RS"), "field 3"},
		{"bad ppid", bad(4, "1x"), "field 4"},
		{"bad threads", bad(20, "-"), "field 20"},
		{"negative startcode", bad(26, "-1"), "field 26"},
		{"bad env_end", bad(51, "9999999999999999999999"), "field 51"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseStat([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error, got %+v", st)
			}
			if !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("error %q does not mention %q", err, tt.errPart)
			}
		})
	}
}
