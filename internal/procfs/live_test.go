package procfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// noSuchPid is above the kernel's maximum pid_max (4194304).
const noSuchPid = 1 << 30

func TestLiveMaps(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(int) ([]Mapping, error){"maps": ReadMaps, "smaps": ReadSmaps} {
		ms, err := read(os.Getpid())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stack := findPath(ms, func(s string) bool { return s == "[stack]" })
		bin := findPath(ms, func(s string) bool { return s == exe })
		if stack == nil && bin == nil {
			t.Errorf("%s: neither [stack] nor %s in %d mappings", name, exe, len(ms))
		}
		if name == "smaps" && stack != nil && !stack.HasFlag("gd") {
			t.Errorf("smaps: [stack] flags %q lack gd", stack.VmFlags)
		}
		if name == "maps" && ms[0].VmFlags != nil {
			t.Errorf("maps: VmFlags %q, want nil", ms[0].VmFlags)
		}
	}
}

func TestLiveStatAndStatus(t *testing.T) {
	pid := os.Getpid()
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != pid || st.Ppid != os.Getppid() || (st.State != 'R' && st.State != 'S') || st.NumThreads < 1 ||
		st.StartCode > st.EndCode || st.ArgStart >= st.ArgEnd || st.EnvStart > st.EnvEnd {
		t.Errorf("stat: %+v", st)
	}
	status, err := ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if status.Pid != pid || status.Tgid != pid || status.PPid != os.Getppid() ||
		status.Uid[0] != os.Getuid() || status.Gid[0] != os.Getgid() || status.Name != st.Comm {
		t.Errorf("status: %+v", status)
	}
	comm, err := ReadComm(pid, pid)
	if err != nil || comm != st.Comm {
		t.Errorf("comm %q, %v; stat comm %q", comm, err, st.Comm)
	}
	tids, err := ListTasks(pid)
	if err != nil || !slices.Contains(tids, pid) || !slices.IsSorted(tids) {
		t.Fatalf("tasks %v, %v", tids, err)
	}
	for _, tid := range tids {
		ts, err := ReadTaskStatus(pid, tid)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited
		}
		if err != nil || ts.Pid != tid || ts.Tgid != pid {
			t.Errorf("task %d: %+v, %v", tid, ts, err)
		}
	}
}

func TestLiveMisc(t *testing.T) {
	pid := os.Getpid()
	w, err := ReadAuxv(pid)
	if err != nil {
		t.Fatal(err)
	}
	pagesz := uint64(0)
	for i := 0; i+1 < len(w); i += 2 {
		if w[i] == 6 { // AT_PAGESZ
			pagesz = w[i+1]
		}
	}
	if pagesz != 4096 {
		t.Errorf("AT_PAGESZ %d", pagesz)
	}
	if _, err := ReadPersonality(pid); err != nil {
		t.Error(err)
	}
	wd, _ := os.Getwd()
	if cwd, err := ReadCwd(pid); err != nil || cwd != wd {
		t.Errorf("cwd %q, %v; want %q", cwd, err, wd)
	}
	exe, _ := os.Executable()
	if got, err := ReadExe(pid); err != nil || got != exe {
		t.Errorf("exe %q, %v; want %q", got, err, exe)
	}
}

func TestLiveFDs(t *testing.T) {
	pid := os.Getpid()
	path := filepath.Join(t.TempDir(), "a file")
	if err := os.WriteFile(path, []byte("hello world"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(5, 0); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	fds, err := ListFDs(pid)
	if err != nil || !slices.IsSorted(fds) {
		t.Fatalf("fds %v, %v", fds, err)
	}
	for _, want := range []int{0, 1, 2, fd} {
		if !slices.Contains(fds, want) {
			t.Errorf("fd %d not in %v", want, fds)
		}
	}
	if link, err := ReadFDLink(pid, fd); err != nil || link != path {
		t.Errorf("link %q, %v; want %q", link, err, path)
	}
	fi, err := ReadFDInfo(pid, fd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Pos != 5 || fi.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || fi.Flags&syscall.O_CLOEXEC == 0 || fi.MntID == 0 || fi.Ino == 0 {
		t.Errorf("fdinfo %+v", fi)
	}

	efd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 7, syscall.O_CLOEXEC, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer syscall.Close(int(efd))
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(ep)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(efd)}
	if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(efd), &ev); err != nil {
		t.Fatal(err)
	}
	if fi, err := ReadFDInfo(pid, int(efd)); err != nil || fi.Extra["eventfd-count"] != "7" {
		t.Errorf("eventfd fdinfo %+v, %v", fi, err)
	}
	fi, err = ReadFDInfo(pid, ep)
	if err != nil {
		t.Fatal(err)
	}
	tfd := fi.Values("tfd")
	if len(tfd) != 1 || !strings.HasPrefix(tfd[0], strconv.Itoa(int(efd))+" events:") {
		t.Errorf("epoll tfd %q", tfd)
	}
}

func TestLiveErrors(t *testing.T) {
	checks := map[string]error{}
	_, checks["maps"] = ReadMaps(noSuchPid)
	_, checks["smaps"] = ReadSmaps(noSuchPid)
	_, checks["stat"] = ReadStat(noSuchPid)
	_, checks["status"] = ReadStatus(noSuchPid)
	_, checks["task/1/status"] = ReadTaskStatus(noSuchPid, 1)
	_, checks["fdinfo/0"] = ReadFDInfo(noSuchPid, 0)
	_, checks["fd"] = ListFDs(noSuchPid)
	_, checks["fd/0"] = ReadFDLink(noSuchPid, 0)
	_, checks["auxv"] = ReadAuxv(noSuchPid)
	_, checks["task"] = ListTasks(noSuchPid)
	_, checks["task/1/comm"] = ReadComm(noSuchPid, 1)
	_, checks["pagemap"] = OpenPagemap(noSuchPid)
	_, checks["personality"] = ReadPersonality(noSuchPid)
	_, checks["cwd"] = ReadCwd(noSuchPid)
	_, checks["exe"] = ReadExe(noSuchPid)
	for file, err := range checks {
		want := "/proc/" + strconv.Itoa(noSuchPid) + "/" + file
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want ENOENT naming %s", file, err, want)
		}
	}
}

// TestReadChildren: a child started by any thread of this process is
// listed; a pid that does not exist is an error matching os.ErrNotExist.
func TestReadChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := ReadChildren(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Fatalf("children of %d: %v, want %d among them", os.Getpid(), kids, cmd.Process.Pid)
	}
	if !slices.IsSorted(kids) {
		t.Fatalf("children %v not sorted", kids)
	}
	if _, err := ReadChildren(noSuchPid); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("children of a pid that does not exist: %v, want ErrNotExist", err)
	}
}
