package image

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// shmCheckpoint is sampleCheckpoint with a memfd mapped and recorded in
// MapFiles, a deleted file open as fd 4 and mapped, shared anonymous
// memory mapped twice, and a SysV segment attached in two mappings.
func shmCheckpoint() *Checkpoint {
	c := sampleCheckpoint()
	p := &c.Processes[0]
	p.VMAs = append(p.VMAs,
		VMA{Start: 0x2000000, End: 0x2002000, Prot: unix.PROT_READ, Shared: true, Kind: KindMemfd, Name: "/memfd:m (deleted)", Dev: 1, Inode: 50},
		VMA{Start: 0x2002000, End: 0x2003000, Prot: unix.PROT_READ, Kind: KindDeleted, Name: "/tmp/d (deleted)", Dev: 1, Inode: 60},
		VMA{Start: 0x3000000, End: 0x3002000, Prot: unix.PROT_READ, Shared: true, Kind: KindSharedAnon, Inode: 70, ShmSize: 2 * PageSize},
		VMA{Start: 0x3002000, End: 0x3004000, Prot: unix.PROT_READ, Shared: true, Kind: KindSharedAnon, Inode: 70, ShmSize: 2 * PageSize,
			ShareOf: &ShmRef{Pid: 4242, Start: 0x3000000}},
		VMA{Start: 0x4000000, End: 0x4001000, Prot: unix.PROT_READ | unix.PROT_WRITE, Shared: true, Kind: KindSysV, Inode: 7},
		VMA{Start: 0x4001000, End: 0x4002000, Prot: unix.PROT_READ, Shared: true, Kind: KindSysV, Inode: 7, Offset: PageSize},
	)
	p.FDs = append(p.FDs, FD{Num: 4, Kind: FDDeleted, Path: "/tmp/d", Mode: unix.S_IFREG | 0o600, Size: 10, FileDev: 1, FileIno: 60,
		MemfdData: []DataRun{{Off: 0, Data: []byte("x")}}})
	p.MapFiles = []FD{{Num: -1, Kind: FDMemfd, MemfdName: "m", Mode: unix.S_IFREG | 0o600, Size: 8192, FileDev: 1, FileIno: 50}}
	c.SysVShm = []SysVShm{{ID: 7, Key: 0x1234, Size: PageSize + 100, Mode: 0o640, Pid: 4242, Start: 0x4000000}}
	return c
}

// TestValidateSharedMemory checks the image rules for memfd and
// deleted-file mappings, shared anonymous memory and SysV segments: what
// a hostile image could put there is refused before restore acts on it.
func TestValidateSharedMemory(t *testing.T) {
	last := func(c *Checkpoint) *VMA { return &c.Processes[0].VMAs[len(c.Processes[0].VMAs)-1] }
	tests := []struct {
		name   string
		mutate func(c *Checkpoint)
		msg    string
	}{
		{"valid", func(c *Checkpoint) {}, ""},
		{"memfd mapping without a record", func(c *Checkpoint) { c.Processes[0].MapFiles = nil }, "no such file recorded"},
		{"mapped file recorded twice", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.MapFiles = append(p.MapFiles, p.MapFiles[0])
		}, "recorded before"},
		{"mapped file with a fd number", func(c *Checkpoint) { c.Processes[0].MapFiles[0].Num = 3 }, "fd -1"},
		{"mapped file of another kind", func(c *Checkpoint) { c.Processes[0].MapFiles[0].Kind = FDPipe }, "want a memfd or deleted file"},
		{"mapping kind differs from its file", func(c *Checkpoint) { c.Processes[0].VMAs[2].Kind = KindDeleted }, "no such file recorded"},
		{"contents on a later record", func(c *Checkpoint) {
			p := &c.Processes[0]
			p.FDs = append(p.FDs, FD{Num: 5, Kind: FDDeleted, Path: "/tmp/d", Mode: unix.S_IFREG | 0o600, Size: 10, FileDev: 1, FileIno: 60,
				MemfdData: []DataRun{{Off: 0, Data: []byte("y")}}})
		}, "only its first record may"},
		{"mapped memfd data beyond its size", func(c *Checkpoint) {
			c.Processes[0].MapFiles[0].MemfdData = []DataRun{{Off: 8190, Data: []byte("abc")}}
		}, "beyond size"},
		{"shared memory object too large", func(c *Checkpoint) { c.Processes[0].VMAs[4].ShmSize = 1 << 50 }, "memory object"},
		{"object size on private memory", func(c *Checkpoint) { c.Processes[0].VMAs[1].ShmSize = PageSize }, "memory object"},
		{"view shares a later mapping", func(c *Checkpoint) { c.Processes[0].VMAs[5].ShareOf.Start = 0x3004000 }, "not listed before it"},
		{"SysV segment unknown", func(c *Checkpoint) { c.SysVShm = nil }, "is not recorded"},
		{"SysV segment twice", func(c *Checkpoint) { c.SysVShm = append(c.SysVShm, c.SysVShm[0]) }, "twice"},
		{"SysV negative id", func(c *Checkpoint) { c.SysVShm[0].ID = -1 }, "out of range"},
		{"SysV size zero", func(c *Checkpoint) { c.SysVShm[0].Size = 0 }, "size 0"},
		{"SysV mode bits", func(c *Checkpoint) { c.SysVShm[0].Mode = 0o4777 }, "mode"},
		{"SysV removed with a key", func(c *Checkpoint) { c.SysVShm[0].Removed = true }, "removed segment"},
		{"SysV attachment short", func(c *Checkpoint) { c.Processes[0].VMAs = c.Processes[0].VMAs[:len(c.Processes[0].VMAs)-1] }, "short of"},
		{"SysV attachment in part", func(c *Checkpoint) { last(c).Offset = 2 * PageSize }, "not a shared view inside it"},
		{"SysV mapping not continuing", func(c *Checkpoint) {
			vmas := c.Processes[0].VMAs
			vmas[len(vmas)-2].End = 0x4002000 // a whole attachment
			v := last(c)
			v.Start, v.End = 0x5000000, 0x5001000
		}, "does not continue"},
		{"SysV pages on a later attachment", func(c *Checkpoint) {
			c.SysVShm[0].Start = 0x6000000
		}, "no attachment of pid"},
		{"SysV too many", func(c *Checkpoint) { c.SysVShm = make([]SysVShm, maxSysVShm+1) }, "at most"},
		{"mapping name too long", func(c *Checkpoint) { c.Processes[0].VMAs[2].Name = strings.Repeat("x", 5000) }, "name of 5000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := shmCheckpoint()
			tt.mutate(c)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Validate() = %v, want ErrCorrupt containing %q", err, tt.msg)
			}
		})
	}
}
