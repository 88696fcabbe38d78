package wire

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuNow is this process's user and system time.
func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSendFile sends a 256 MiB file over loopback into a reader
// that drops it (the sender's side alone), and reports the CPU time per
// GiB of the whole process besides the time.
func BenchmarkSendFile(b *testing.B) {
	for _, prot := range []Protection{Encrypted, IntegrityOnly} {
		b.Run(prot.String()[:9], func(b *testing.B) {
			sv, cl := pair(&testing.T{})
			defer sv.Close()
			defer cl.Close()
			go func() { _, _ = io.Copy(io.Discard, sv) }()
			c := &Conn{}
			*c = *newConn(cl)
			if err := c.keys(testToken, make([]byte, 32), make([]byte, 32), "client", prot); err != nil {
				b.Fatal(err)
			}
			path := filepath.Join(b.TempDir(), "pages-1.img")
			if err := os.WriteFile(path, make([]byte, 256<<20), 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(256 << 20)
			b.ResetTimer()
			c0 := cpuNow(b)
			for i := 0; i < b.N; i++ {
				if _, err := c.sendFile(path, "pages-1.img"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric((cpuNow(b)-c0).Seconds()/float64(b.N)*4, "cpu-s/GiB")
		})
	}
}
