package kcheck

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// wantOrder is the Feature of each Result of Run, in order.
var wantOrder = []string{
	featArch, featKernel, featCaps, featSysResource, featPtraceScope, featVMReadv,
	featStub, featVDSO, featMMMap,
	featTimeNS, featUffdWP, featUffdMissing, featPagemapScan, featSoftDirty, featVMAIter,
}

func TestRun(t *testing.T) {
	rs := Run()
	var buf bytes.Buffer
	Write(&buf, rs)
	t.Logf("\n%s", buf.String())
	if len(rs) != len(wantOrder) {
		t.Fatalf("Run returned %d results, want %d", len(rs), len(wantOrder))
	}
	for i, r := range rs {
		if r.Feature != wantOrder[i] {
			t.Errorf("result %d is %q, want %q", i, r.Feature, wantOrder[i])
		}
		if r.Feature == "" || r.Detail == "" {
			t.Errorf("result %d has an empty Feature or Detail: %+v", i, r)
		}
		if strings.Contains(r.Detail, "\n") {
			t.Errorf("result %d: Detail is not one line: %q", i, r.Detail)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: the required probes need CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE")
	}
	for _, r := range rs {
		if r.Required && !r.OK {
			t.Errorf("required probe %q failed: %s", r.Feature, r.Detail)
		}
	}
	if !AllRequiredOK(rs) {
		t.Error("AllRequiredOK = false")
	}
}

func TestCheckRelease(t *testing.T) {
	tests := []struct {
		rel     string
		wantErr string // "" means supported
	}{
		{"6.18.44-fc-v669", ""},
		{"6.7.0", ""},
		{"6.7", ""},
		{"6.10-rc1", ""},
		{"7.0", ""},
		{"6.6.1", "too old"},
		{"5.15.0-91-generic", "too old"},
		{"4.19.0", "too old"},
		{"garbage", "no major.minor"},
		{"x.7", "major"},
		{"6.", "minor"},
		{"", "no major.minor"},
	}
	for _, tt := range tests {
		err := checkRelease(tt.rel)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("checkRelease(%q) = %v, want ok", tt.rel, err)
		case tt.wantErr != "" && err == nil:
			t.Errorf("checkRelease(%q) = ok, want error containing %q", tt.rel, tt.wantErr)
		case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
			t.Errorf("checkRelease(%q) = %v, want error containing %q", tt.rel, err, tt.wantErr)
		}
	}
}

func TestWrite(t *testing.T) {
	rs := []Result{
		{Feature: "a feature", Required: true, OK: true, Detail: "fine"},
		{Feature: "b", Required: true, Detail: "broken"},
		{Feature: "c later", Detail: "not here"},
	}
	var buf bytes.Buffer
	Write(&buf, rs)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1+len(rs) {
		t.Fatalf("Write printed %d lines, want %d:\n%s", len(lines), 1+len(rs), buf.String())
	}
	want := [][]string{
		{"FEATURE", "NEEDED", "STATUS", "DETAIL"},
		{"a feature", "required", "ok", "fine"},
		{"b", "required", "FAILED", "broken"},
		{"c later", "later", "missing", "not here"},
	}
	// Columns are aligned: each starts at the same offset on every line.
	col := strings.Index(lines[0], "NEEDED")
	for i, line := range lines {
		for _, field := range want[i] {
			if !strings.Contains(line, field) {
				t.Errorf("line %d %q lacks %q", i, line, field)
			}
		}
		if !strings.HasPrefix(line[col:], want[i][1]) {
			t.Errorf("line %d %q: NEEDED column not at offset %d", i, line, col)
		}
	}
	if AllRequiredOK(rs) {
		t.Error("AllRequiredOK = true with a failed required probe")
	}
	if !AllRequiredOK(rs[:1]) || !AllRequiredOK([]Result{rs[0], rs[2]}) {
		t.Error("AllRequiredOK = false though every required probe passed")
	}
}

func TestUAPI(t *testing.T) {
	if got := unsafe.Sizeof(pmScanArg{}); got != 96 {
		t.Errorf("sizeof(struct pm_scan_arg) = %d, want 96", got)
	}
	if got := unsafe.Sizeof(pageRegion{}); got != 24 {
		t.Errorf("sizeof(struct page_region) = %d, want 24", got)
	}
	if got, want := iowr('f', 16, unsafe.Sizeof(pmScanArg{})), uintptr(pagemapScan); got != want {
		t.Errorf("_IOWR('f', 16, pm_scan_arg) = %#x, want %#x", got, want)
	}
	if got, want := iowr(0xAA, 0x3F, unsafe.Sizeof(uffdioAPIArg{})), uintptr(uffdioAPI); got != want {
		t.Errorf("_IOWR(0xAA, 0x3F, uffdio_api) = %#x, want %#x", got, want)
	}
}
