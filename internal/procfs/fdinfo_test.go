package procfs

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseFDInfoRecorded(t *testing.T) {
	tests := []struct {
		file string
		want FDInfo
	}{
		{"fdinfo_reg.txt", FDInfo{Pos: 3, Flags: 0o2100000, MntID: 27, Ino: 611, Extra: map[string]string{}}},
		{"fdinfo_eventfd.txt", FDInfo{Flags: 0o2004002, MntID: 17, Ino: 1038, Extra: map[string]string{
			"eventfd-count": "5", "eventfd-id": "1", "eventfd-semaphore": "0"}}},
		{"fdinfo_epoll.txt", FDInfo{Flags: 0o2000002, MntID: 17, Ino: 1038, Extra: map[string]string{
			"tfd": "11 events: 80000019 data:                b  pos:0 ino:16c8 sdev:f\n" +
				"8 events:       19 data:                8  pos:0 ino:40e sdev:10"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			fi, err := ParseFDInfo(bytes.NewReader(readTestdata(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*fi, tt.want) {
				t.Errorf("got %+v\nwant %+v", *fi, tt.want)
			}
		})
	}
}

// inotifySample is a hand-written fdinfo of an inotify fd with two watches,
// in the format of fs/notify/fdinfo.c.
const inotifySample = "pos:\t0\nflags:\t00\nmnt_id:\t16\nino:\t1057\n" +
	"inotify wd:2 ino:a2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a200000000000000\n" +
	"inotify wd:1 ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000\n"

// timerfdSample is a hand-written fdinfo of a timerfd (fs/timerfd.c).
const timerfdSample = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\n" +
	"clockid: 1\nticks: 0\nsettime flags: 01\nit_value: (0, 499999478)\nit_interval: (1, 0)\n"

func TestParseFDInfoSamples(t *testing.T) {
	fi, err := ParseFDInfo(strings.NewReader(inotifySample))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"wd:2 ino:a2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a200000000000000",
		"wd:1 ino:2 sdev:800013 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000",
	}
	if got := fi.Values("inotify"); !reflect.DeepEqual(got, want) || len(fi.Extra) != 1 {
		t.Errorf("inotify values %q, extra %q", got, fi.Extra)
	}
	if fi.Values("tfd") != nil {
		t.Errorf("Values of a missing key not nil")
	}

	fi, err = ParseFDInfo(strings.NewReader(timerfdSample))
	if err != nil {
		t.Fatal(err)
	}
	wantExtra := map[string]string{"clockid": "1", "ticks": "0", "settime flags": "01",
		"it_value": "(0, 499999478)", "it_interval": "(1, 0)"}
	if fi.Flags != 2 || !reflect.DeepEqual(fi.Extra, wantExtra) {
		t.Errorf("timerfd: %+v", fi)
	}
}

func TestParseFDInfoMalformed(t *testing.T) {
	tests := []struct{ name, in, errPart string }{
		{"empty", "", "missing"},
		{"no flags", "pos:\t0\n", "missing"},
		{"no pos", "flags:\t02\n", "missing"},
		{"no colon", "pos:\t0\nflags:\t02\ngarbage\n", "line 3"},
		{"truncated", "pos:\t0\nflag", "line 2"},
		{"bad pos", "pos:\tx\nflags:\t02\n", "pos"},
		{"flags not octal", "pos:\t0\nflags:\t08\n", "flags"},
		{"bad mnt_id", "pos:\t0\nflags:\t02\nmnt_id:\t\n", "mnt_id"},
		{"bad ino", "pos:\t0\nflags:\t02\nino:\t-1\n", "ino"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := ParseFDInfo(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error, got %+v", fi)
			}
			if !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("error %q does not mention %q", err, tt.errPart)
			}
		})
	}
}
