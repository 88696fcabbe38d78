package rtcr_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/files"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// nobody is the uid and gid of the unprivileged user the trust tests run
// their target as (Debian's nobody/nogroup).
const nobody = 65534

// startNobody starts the counter as uid/gid 65534 without groups or
// capabilities, from a binary nobody may execute but not read (mode 0711:
// execve needs no read permission, and neither does a restore of it) and
// with stdout in a file nobody can open.
func startNobody(t *testing.T) *target {
	t.Helper()
	bin := testutil.BuildC(t, "counter", false)
	pub, err := os.MkdirTemp("", "rtcr-trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(pub, "counter")
	if err := os.WriteFile(own, b, 0o711); err != nil {
		t.Fatal(err)
	}
	tg := start(t, "/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--", own)
	// The process holds its stdout; as nobody it could open it too.
	for _, p := range []string{filepath.Dir(tg.dir), tg.dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(tg.out, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	return tg
}

// editManifest reads the manifest in dir, lets f change it and writes it
// back with a correct checksum (no validation), as anyone who can write
// the file can: in format version 4, whose payload is plain JSON (page
// runs included), still read.
func editManifest(t *testing.T, dir string, f func(c *image.Checkpoint)) {
	t.Helper()
	path := filepath.Join(dir, image.ManifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 56
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	f(c)
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	writeManifestRaw(t, path, b[:hdr], payload)
}

// writeManifestRaw writes header hdr (version 4, length and checksum
// replaced) and payload, JSON, to path.
func writeManifestRaw(t *testing.T, path string, hdr, payload []byte) {
	t.Helper()
	h := bytes.Clone(hdr)
	binary.LittleEndian.PutUint32(h[8:], 4) // the last version whose payload is plain JSON
	binary.LittleEndian.PutUint64(h[16:], uint64(len(payload)))
	sum := sha256.Sum256(payload)
	copy(h[24:], sum[:])
	if err := os.WriteFile(path, append(h, payload...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// chownImage gives the image directory and its files to uid/gid 65534, as
// if nobody had written them.
func chownImage(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(ents, nil) {
		p := dir
		if e != nil {
			p = filepath.Join(dir, e.Name())
		}
		if err := os.Lchown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostileImages edits a good image of a uid-65534 process in each way
// its owner could (manifest edited, checksum recomputed) and checks that
// restore refuses it, naming the field, before any process exists, and
// that nothing was written.
func TestHostileImages(t *testing.T) {
	testutil.RequireRoot(t)
	tg := startNobody(t)
	good := tg.dump(false)

	// A root-only file for the fd and mapping cases; it must stay unchanged.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, bytes.Repeat([]byte("s"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	root := func(c *image.Checkpoint) *image.Process { return &c.Processes[0] }
	addFD := func(fd image.FD) func(c *image.Checkpoint) {
		return func(c *image.Checkpoint) { root(c).FDs = append(root(c).FDs, fd) }
	}
	allCaps := uint64(1)<<41 - 1
	// pid_max is the pid namespace's own since Linux 6.14: a new one gets
	// PID_MAX_LIMIT whatever the host's is. A tid at pid_max is refused by
	// that check when pid_max is lower, and as out of range when it is not.
	badTid, badTidMsg := pidMax(t), ""
	if badTid < image.MaxPid {
		badTidMsg = fmt.Sprintf("tid %d is not below pid_max %d", badTid, badTid)
	} else {
		badTid = image.MaxPid
		badTidMsg = fmt.Sprintf("tid %d out of range", badTid)
	}
	tests := []struct {
		name   string
		owned  bool // chown the image to 65534 and pass TrustImageOwner
		trust  bool // pass TrustImageOwner
		edit   func(c *image.Checkpoint)
		damage func(t *testing.T, dir string)
		want   error
		msg    string
	}{
		{name: "owned by another user", damage: func(t *testing.T, dir string) { chownImage(t, dir) },
			want: image.ErrUntrusted, msg: "owned by uid 65534"},
		{name: "directory writable by others", damage: func(t *testing.T, dir string) { os.Chmod(dir, 0o757) },
			want: image.ErrUntrusted, msg: "writable by group or others"},
		{name: "manifest writable by group", damage: func(t *testing.T, dir string) {
			os.Chmod(filepath.Join(dir, image.ManifestName), 0o620)
		}, want: image.ErrUntrusted, msg: "writable by group or others"},
		{name: "page file of another owner", damage: func(t *testing.T, dir string) {
			os.Chown(filepath.Join(dir, rootPageFile(t, dir)), 1234, 1234)
		}, want: image.ErrUntrusted, msg: "owned by uid 1234"},
		{name: "root manifest, page file of the trusted owner, uid 0", trust: true, edit: func(c *image.Checkpoint) {
			cr := root(c).Creds
			cr.Uid, cr.Euid, cr.Suid, cr.Fsuid = 0, 0, 0, 0
			cr.CapPrm, cr.CapEff = allCaps, allCaps
		}, damage: func(t *testing.T, dir string) {
			os.Chown(filepath.Join(dir, rootPageFile(t, dir)), nobody, nobody)
		}, want: image.ErrUntrusted, msg: "uid 0 is not the image owner's uid 65534"},
		{name: "uid 0 with all capabilities", owned: true, edit: func(c *image.Checkpoint) {
			cr := root(c).Creds
			cr.Uid, cr.Euid, cr.Suid, cr.Fsuid = 0, 0, 0, 0
			cr.CapPrm, cr.CapEff, cr.CapInh = allCaps, allCaps, allCaps
		}, want: image.ErrUntrusted, msg: "uid 0 is not the image owner's uid 65534"},
		{name: "capabilities only", owned: true, edit: func(c *image.Checkpoint) { root(c).Creds.CapAmb = 1 << 21 },
			want: image.ErrUntrusted, msg: "ambient capabilities 0x200000 beyond"},
		{name: "group root", owned: true, edit: func(c *image.Checkpoint) { root(c).Creds.Groups = []uint32{0} },
			want: image.ErrUntrusted, msg: "supplementary group 0 is not a group of the image owner"},
		{name: "credentials removed", owned: true, edit: func(c *image.Checkpoint) { root(c).Creds = nil },
			want: image.ErrUntrusted, msg: "no credentials"},
		{name: "fd on a root-only file", owned: true,
			edit: addFD(image.FD{Num: 7, Kind: image.FDFile, Path: secret, Flags: unix.O_RDONLY, Mode: unix.S_IFREG | 0o600, Size: 4096}),
			want: files.ErrAccess, msg: "fd 7 (" + secret + ")"},
		{name: "fd on /etc/shadow read-write", owned: true,
			edit: func(c *image.Checkpoint) {
				var st unix.Stat_t
				_ = unix.Stat("/etc/shadow", &st)
				addFD(image.FD{Num: 7, Kind: image.FDFile, Path: "/etc/shadow", Flags: unix.O_RDWR, Mode: st.Mode, Size: st.Size})(c)
			},
			want: files.ErrAccess, msg: "fd 7 (/etc/shadow)"},
		{name: "fd path with ..", owned: true,
			edit: addFD(image.FD{Num: 7, Kind: image.FDFile, Path: "/tmp/../etc/shadow", Flags: unix.O_RDONLY, Mode: unix.S_IFREG | 0o640}),
			want: image.ErrCorrupt, msg: "not absolute and clean"},
		{name: "fd on a FIFO", edit: addFD(image.FD{Num: 7, Kind: image.FDFile, Path: fifo, Flags: unix.O_RDONLY, Mode: unix.S_IFIFO | 0o666}),
			want: image.ErrCorrupt, msg: "file type"},
		{name: "executable is a FIFO", edit: func(c *image.Checkpoint) { root(c).Exe = fifo },
			want: files.ErrChanged, msg: "executable (" + fifo + "): file type 010000"},
		{name: "executable is a device", owned: true, edit: func(c *image.Checkpoint) { root(c).Exe = "/dev/zero" },
			want: files.ErrChanged, msg: "executable (/dev/zero): file type 020000"},
		{name: "executable path with ..", owned: true, edit: func(c *image.Checkpoint) { root(c).Exe = "/tmp/../usr/bin/true" },
			want: image.ErrCorrupt, msg: "executable path \"/tmp/../usr/bin/true\" is not absolute and clean"},
		{name: "shared writable mapping of a root file with a saved page", edit: func(c *image.Checkpoint) {
			p := root(c)
			for i := range p.VMAs {
				if v := &p.VMAs[i]; len(v.Pages) > 0 {
					v.Kind, v.Shared, v.Path, v.Name, v.Offset = image.KindFile, true, secret, secret, 0
					v.Prot |= unix.PROT_WRITE
					return
				}
			}
		}, want: image.ErrCorrupt, msg: "shared file mapping of " + secret + " with saved pages"},
		{name: "shared writable mapping of a root-only file", owned: true, edit: func(c *image.Checkpoint) {
			p := root(c)
			last := p.VMAs[len(p.VMAs)-1]
			for i := range p.VMAs {
				if v := &p.VMAs[i]; v.Kind == image.KindAnon && len(v.Pages) == 0 {
					v.Kind, v.Shared, v.Path, v.Name, v.Offset = image.KindFile, true, secret, secret, 0
					v.Prot = unix.PROT_READ | unix.PROT_WRITE
					return
				}
			}
			// No empty anonymous mapping: add one above the last.
			p.VMAs = append(p.VMAs, image.VMA{Start: last.End + 1<<20, End: last.End + 1<<20 + 4096,
				Prot: unix.PROT_READ | unix.PROT_WRITE, Shared: true, Kind: image.KindFile, Path: secret, Name: secret})
		}, want: files.ErrAccess, msg: secret},
		{name: "mapping at address 0", edit: func(c *image.Checkpoint) {
			p := root(c)
			p.VMAs = append([]image.VMA{{Start: 0, End: 4096, Prot: unix.PROT_READ, Kind: image.KindAnon}}, p.VMAs...)
		}, want: image.ErrCorrupt, msg: "starts below mmap_min_addr"},
		{name: "eventfd counter 2^64-1", edit: addFD(image.FD{Num: 7, Kind: image.FDEventfd, Count: ^uint64(0)}),
			want: image.ErrCorrupt, msg: "fd 7: eventfd counter"},
		{name: "fd 2^32+5", edit: addFD(image.FD{Num: 1<<32 + 5, Kind: image.FDEventfd}),
			want: image.ErrCorrupt, msg: "fd 4294967301: number out of range"},
		{name: "fd 2^40", edit: addFD(image.FD{Num: 1 << 40, Kind: image.FDEventfd}),
			want: image.ErrCorrupt, msg: "fd 1099511627776: number out of range"},
		{name: "fd above nr_open", edit: addFD(image.FD{Num: 1 << 30, Kind: image.FDEventfd}),
			want: image.ErrCorrupt, msg: "fd 1073741824 is not below nr_open"},
		{name: "tid above pid_max", edit: func(c *image.Checkpoint) {
			root(c).Threads = append(root(c).Threads, root(c).Threads[0])
			root(c).Threads[1].Tid = badTid
		}, want: image.ErrCorrupt, msg: badTidMsg},
		{name: "SIGKILL handler", edit: func(c *image.Checkpoint) {
			root(c).Sigactions = append(root(c).Sigactions, image.Sigaction{Signal: 9, Handler: 0x401000})
		}, want: image.ErrCorrupt, msg: "signal 9 (SIGKILL or SIGSTOP)"},
		{name: "zombie root", edit: func(c *image.Checkpoint) {
			p := root(c)
			*p = image.Process{Pid: p.Pid, Ppid: p.Ppid, Pgid: p.Pgid, Sid: p.Sid, Zombie: true}
		}, want: image.ErrCorrupt, msg: "root is a zombie"},
		{name: "FIFO as manifest", damage: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, image.ManifestName))
			unix.Mkfifo(filepath.Join(dir, image.ManifestName), 0o600)
		}, want: image.ErrNotImage, msg: "not a regular file"},
		{name: "FIFO as page file", damage: func(t *testing.T, dir string) {
			pf := filepath.Join(dir, rootPageFile(t, dir))
			os.Remove(pf)
			unix.Mkfifo(pf, 0o600)
		}, want: image.ErrCorrupt, msg: "not a regular file"},
		{name: "a million threads", damage: func(t *testing.T, dir string) {
			path := filepath.Join(dir, image.ManifestName)
			b, _ := os.ReadFile(path)
			var p bytes.Buffer
			p.WriteString(`{"Arch":"x86_64","Processes":[{"Pid":1,"Threads":[`)
			p.WriteString(strings.Repeat(`{"Tid":1,"Name":"x"},`, 1_000_000))
			p.WriteString(`{"Tid":1}]}]}`)
			writeManifestRaw(t, path, b[:56], p.Bytes())
		}, want: image.ErrCorrupt, msg: "more than 32768 Threads"},
	}
	secretBefore, _ := os.ReadFile(secret)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, good)
			if tc.edit != nil {
				editManifest(t, dir, tc.edit)
			}
			if tc.owned {
				chownImage(t, dir)
			}
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			start := time.Now()
			_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, TrustImageOwner: tc.owned || tc.trust})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("restore: error %v, want %v containing %q", err, tc.want, tc.msg)
			}
			t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
			if !pidFree(tg.pid) {
				t.Fatalf("a process with pid %d exists after a refused restore", tg.pid)
			}
			// inspect reads any image, bounded: it finishes, printing or refusing.
			if c, err := image.ReadManifest(dir); err == nil {
				_ = inspect.Write(io.Discard, dir, c)
			}
		})
	}
	if b, _ := os.ReadFile(secret); !bytes.Equal(b, secretBefore) {
		t.Fatalf("%s was written by a refused restore", secret)
	}
	// The image owned by nobody, accepted as nobody's, restores a nobody.
	owned := copyDir(t, good)
	chownImage(t, owned)
	if _, err := rtcr.Restore(rtcr.RestoreOptions{Dir: owned, TrustImageOwner: true}); err != nil {
		t.Fatalf("restore of nobody's own image: %v", err)
	}
	n := len(testutil.WaitForLines(t, tg.out, 1, time.Second))
	testutil.WaitForLines(t, tg.out, n+5, 10*time.Second)
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(tg.pid), &st); err != nil || st.Uid != nobody {
		t.Fatalf("restored process: uid %d (%v), want %d", st.Uid, err, nobody)
	}
}

// rootPageFile returns the page file the image in dir names for its root.
func rootPageFile(t *testing.T, dir string) string {
	t.Helper()
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c.Processes[0].PageFile
}

// pidMax returns this pid namespace's pid_max.
func pidMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid_max %q: %v", b, err)
	}
	return n
}
