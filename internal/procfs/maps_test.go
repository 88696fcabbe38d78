package procfs

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		name, line string
		want       Mapping
	}{
		{"file", "5587e21c6000-5587e21c7000 r-xp 00001000 fe:00 18500                      /usr/bin/python3.11",
			Mapping{Start: 0x5587e21c6000, End: 0x5587e21c7000, Read: true, Exec: true, Offset: 0x1000, DevMajor: 0xfe, Inode: 18500, Path: "/usr/bin/python3.11"}},
		{"anon trailing space", "7fe0a9c79000-7fe0a9dac000 rw-p 00000000 00:00 0 ",
			Mapping{Start: 0x7fe0a9c79000, End: 0x7fe0a9dac000, Read: true, Write: true}},
		{"anon no trailing space", "7fe0a9c79000-7fe0a9dac000 rw-p 00000000 00:00 0",
			Mapping{Start: 0x7fe0a9c79000, End: 0x7fe0a9dac000, Read: true, Write: true}},
		{"spaces and deleted", "7f0000000000-7f0000002000 rw-s 00000000 fe:00 9978233                    /tmp/a  b/my file.bin (deleted)",
			Mapping{Start: 0x7f0000000000, End: 0x7f0000002000, Read: true, Write: true, Shared: true, DevMajor: 0xfe, Inode: 9978233, Path: "/tmp/a  b/my file.bin (deleted)"}},
		{"trailing space in name", "1000-2000 r--p 00000000 08:01 7 /x ",
			Mapping{Start: 0x1000, End: 0x2000, Read: true, DevMajor: 8, DevMinor: 1, Inode: 7, Path: "/x "}},
		{"anon name", "1000-3000 rw-p 00000000 00:00 0                          [anon:my heap]",
			Mapping{Start: 0x1000, End: 0x3000, Read: true, Write: true, Path: "[anon:my heap]"}},
		{"big minor and offset", "1000-2000 ---p ffffffff00001000 103:fffff 123456789012 /dev/x",
			Mapping{Start: 0x1000, End: 0x2000, Offset: 0xffffffff00001000, DevMajor: 0x103, DevMinor: 0xfffff, Inode: 123456789012, Path: "/dev/x"}},
		{"vsyscall", "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
			Mapping{Start: 0xffffffffff600000, End: 0xffffffffff601000, Exec: true, Path: "[vsyscall]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMaps(strings.NewReader(tt.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseMapsMalformed(t *testing.T) {
	good := "1000-2000 r--p 00000000 08:01 7 /x\n"
	tests := []struct{ name, in, errPart string }{
		{"truncated", good + "1000-2000 r--p 00000000 08:01", "line 2"},
		{"truncated range", "1000-", "line 1"},
		{"no dash", "10002000 r--p 00000000 08:01 7", "range"},
		{"bad start hex", "10g0-2000 r--p 00000000 08:01 7", "start"},
		{"bad end hex", "1000-2z00 r--p 00000000 08:01 7", "end"},
		{"end before start", "2000-1000 r--p 00000000 08:01 7", "end before start"},
		{"short perms", "1000-2000 r-p 00000000 08:01 7", "permissions"},
		{"bad perm letter", "1000-2000 rwxq 00000000 08:01 7", "permissions"},
		{"swapped perm letters", "1000-2000 wr-p 00000000 08:01 7", "permissions"},
		{"bad offset", "1000-2000 r--p 0000x000 08:01 7", "offset"},
		{"bad dev", "1000-2000 r--p 00000000 0801 7", "device"},
		{"bad major", "1000-2000 r--p 00000000 g8:01 7", "major"},
		{"bad minor", "1000-2000 r--p 00000000 08:0h 7", "minor"},
		{"bad inode", "1000-2000 r--p 00000000 08:01 7a /x", "inode"},
		{"empty line", good + "\n", "line 2"},
		{"overflow", "11111111111111111-2000 r--p 00000000 08:01 7", "start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMaps(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("no error, got %+v", got)
			}
			if !strings.Contains(err.Error(), tt.errPart) || !strings.HasPrefix(err.Error(), "parse maps") {
				t.Errorf("error %q does not mention %q", err, tt.errPart)
			}
		})
	}
}

// findPath returns the first mapping whose Path satisfies ok.
func findPath(ms []Mapping, ok func(string) bool) *Mapping {
	for i := range ms {
		if ok(ms[i].Path) {
			return &ms[i]
		}
	}
	return nil
}

func TestParseMapsRecorded(t *testing.T) {
	ms, err := ParseMaps(bytes.NewReader(readTestdata(t, "maps.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 127 {
		t.Errorf("got %d mappings, want 127", len(ms))
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].Start < ms[i-1].End || ms[i].VmFlags != nil {
			t.Errorf("mapping %d: %+v out of order or with VmFlags", i, ms[i])
		}
	}
	checkRecordedMappings(t, ms)
}

func checkRecordedMappings(t *testing.T, ms []Mapping) {
	t.Helper()
	for _, p := range []string{"[heap]", "[stack]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]"} {
		if findPath(ms, func(s string) bool { return s == p }) == nil {
			t.Errorf("no %s mapping", p)
		}
	}
	sp := findPath(ms, func(s string) bool { return strings.HasSuffix(s, "/my file.bin") })
	if sp == nil || !sp.Shared || !sp.Write || sp.Size() != 8192 || !strings.HasPrefix(sp.Path, "/tmp/rtcr ") {
		t.Errorf("spaced mapping: %+v", sp)
	}
	del := findPath(ms, func(s string) bool { return strings.HasSuffix(s, "/gone (deleted)") })
	if del == nil || del.Shared || del.Inode == 0 || del.Size() != 4096 {
		t.Errorf("deleted mapping: %+v", del)
	}
	anon := findPath(ms, func(s string) bool { return s == "" })
	if anon == nil || anon.Inode != 0 || anon.DevMajor != 0 {
		t.Errorf("anonymous mapping: %+v", anon)
	}
	first := ms[0]
	want := Mapping{Start: 0x5587e21c5000, End: 0x5587e21c6000, Read: true, DevMajor: 0xfe, Inode: 18500,
		Path: "/root/.pyenv/versions/3.11.7/bin/python3.11", VmFlags: first.VmFlags}
	if !reflect.DeepEqual(first, want) {
		t.Errorf("first mapping %+v, want %+v", first, want)
	}
}

func TestParseSmapsRecorded(t *testing.T) {
	ms, err := ParseSmaps(bytes.NewReader(readTestdata(t, "smaps.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 127 {
		t.Errorf("got %d mappings, want 127", len(ms))
	}
	checkRecordedMappings(t, ms)
	tests := []struct {
		path      string
		has, hasn []string
	}{
		{"[vvar]", []string{"pf", "io", "dd"}, []string{"gd", "wr"}},
		{"[stack]", []string{"rd", "wr", "gd"}, []string{"dd", "ex"}},
		{"[vsyscall]", []string{"ex"}, []string{"rd"}},
		{"/my file.bin", []string{"sh", "wr"}, []string{"ex"}},
	}
	for _, tt := range tests {
		m := findPath(ms, func(s string) bool { return strings.HasSuffix(s, tt.path) })
		if m == nil {
			t.Errorf("%s missing", tt.path)
			continue
		}
		for _, f := range tt.has {
			if !m.HasFlag(f) {
				t.Errorf("%s: no flag %q in %q", tt.path, f, m.VmFlags)
			}
		}
		for _, f := range tt.hasn {
			if m.HasFlag(f) {
				t.Errorf("%s: unexpected flag %q in %q", tt.path, f, m.VmFlags)
			}
		}
	}
	for i, m := range ms {
		if m.VmFlags == nil {
			t.Errorf("mapping %d (%s) has no VmFlags", i, m.Path)
		}
	}
}

func TestParseSmapsMalformed(t *testing.T) {
	head := "1000-2000 r--p 00000000 08:01 7 /x\n"
	tests := []struct{ name, in string }{
		{"key first", "Size: 4 kB\n" + head},
		{"bad header", head + "Size: 4 kB\n1000-2000 r--p 00000000\n"},
		{"truncated header", head + "VmFlags: rd\n1000-20"},
	}
	for _, tt := range tests {
		if _, err := ParseSmaps(strings.NewReader(tt.in)); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	ms, err := ParseSmaps(strings.NewReader(head + "VmFlags:\n"))
	if err != nil || len(ms) != 1 || ms[0].VmFlags == nil || len(ms[0].VmFlags) != 0 {
		t.Errorf("empty VmFlags: %+v, %v", ms, err)
	}
}
