package dnsproxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// BenchmarkOtherGateLatencyDuringFlood measures one sandbox's DNS while
// another floods its own gate, both gates in this process as in the daemon.
// Each iteration is one query to the quiet gate, forwarded to its upstream
// and admitted; "no flood" is the baseline of the same run. The flood comes
// from another process, as a sandbox's would: several goroutines there send
// to the other gate as fast as they can (UDP: without waiting for answers;
// TCP: opening connections and keeping the last ones open). Flooders in
// this process would compete with the gates in Go's scheduler, which a
// sandbox cannot do.
//
// Metrics: the quiet gate's p50/p99 in microseconds; the flood's packets
// (or connections) a second, and what of it the flooded gate dropped (or
// reset) and the kernel dropped for its UDP socket, a second; this
// process's peak heap in use, RSS and goroutines while the flood ran
// (sampled every 100 ms).
func BenchmarkOtherGateLatencyDuringFlood(b *testing.B) {
	cases := []struct {
		name     string
		flood    string        // what the flooder process sends, see flooder
		upstream time.Duration // the flooded gate's upstream answers after this
	}{
		{name: "no flood"},
		{name: "refused names", flood: "udp evil.test"},
		{name: "forwarded names, fast upstream", flood: "udp api.example.com"},
		{name: "forwarded names, slow upstream", flood: "udp api.example.com", upstream: 500 * time.Millisecond},
		{name: "TCP connections", flood: "tcp"},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			floodUp := startHeldUpstream(b, bc.upstream)
			if bc.upstream == 0 {
				floodUp.free() // answers at once
			}
			defer floodUp.free()
			// The flooded gate has the daemon's defaults.
			flooded, err := New(Config{Upstreams: []string{floodUp.addr}}, &countingGate{allow: "api.example.com."})
			if err != nil {
				b.Fatal(err)
			}
			floodPC, _ := run(b, flooded)
			floodAddr := floodPC.LocalAddr().String()
			up := startHeldUpstream(b, 0)
			up.free()
			// The quiet gate's rate limit is lifted: this benchmark
			// asks it back to back, faster than any agent would.
			_, addr := start(b, Config{Upstreams: []string{up.addr}, RateLimit: 1e9, Burst: 1e9}, &countingGate{allow: "api.example.com."})

			ctx, cancel := context.WithCancel(context.Background())
			var f *flooderProcess
			if bc.flood != "" {
				f = startFlooder(b, bc.flood+" "+floodAddr)
			}
			var peak peakUse
			var wg sync.WaitGroup
			wg.Go(func() { peak.sample(ctx, 100*time.Millisecond) })
			time.Sleep(200 * time.Millisecond) // the flood is under way
			shed0, reset0, kernel0, began := flooded.shed.dropped.Load(), flooded.shed.reset.Load(), socketDrops(floodPC), time.Now()

			c := &dns.Client{Timeout: 2 * time.Second}
			m := new(dns.Msg).SetQuestion("api.example.com.", dns.TypeA)
			took := make([]time.Duration, 0, b.N)
			failed := 0
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				r, _, err := c.Exchange(m, addr)
				took = append(took, time.Since(t0))
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					failed++
				}
			}
			b.StopTimer()
			elapsed := time.Since(began)
			shed := flooded.shed.dropped.Load() - shed0 + flooded.shed.reset.Load() - reset0
			kernel := socketDrops(floodPC) - kernel0
			cancel()
			wg.Wait()

			if failed > 0 {
				b.Errorf("%d of %d queries to the quiet gate failed", failed, b.N)
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
			if f != nil {
				sent, floodFor := f.stop(b)
				b.ReportMetric(float64(sent)/floodFor.Seconds(), "flood/s")
				b.ReportMetric(float64(shed)/elapsed.Seconds(), "dropped/s")
				b.ReportMetric(float64(kernel)/elapsed.Seconds(), "kernel-dropped/s")
			}
			b.ReportMetric(float64(peak.heap.Load())/(1<<20), "heap-MB")
			b.ReportMetric(float64(peak.rss.Load())/(1<<20), "rss-MB")
			b.ReportMetric(float64(peak.goroutines.Load()), "goroutines")
		})
	}
}

// flooderEnv, when set, makes the test binary a flooder (see TestMain):
// "udp NAME ADDR" or "tcp ADDR".
const flooderEnv = "DNSPROXY_FLOODER"

// flooders is how many goroutines the flooder process floods from.
const flooders = 4

func TestMain(m *testing.M) {
	if spec := os.Getenv(flooderEnv); spec != "" {
		os.Exit(flooder(spec))
	}
	os.Exit(m.Run())
}

// flooder floods as spec says until its standard input is closed, then
// prints how many packets (or connections) it sent.
func flooder(spec string) int {
	if err := pinToLastCPU(); err != nil {
		fmt.Fprintf(os.Stderr, "flooder: %v\n", err)
		return 2
	}
	f := strings.Fields(spec)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range flooders {
		switch {
		case len(f) == 3 && f[0] == "udp":
			wg.Go(func() { sent.Add(int64(udpFlood(ctx, f[2], f[1]))) })
		case len(f) == 2 && f[0] == "tcp":
			wg.Go(func() { sent.Add(int64(tcpFlood(ctx, f[1]))) })
		default:
			fmt.Fprintf(os.Stderr, "%s: bad flood %q\n", flooderEnv, spec)
			return 2
		}
	}
	wg.Wait()
	fmt.Println(sent.Load())
	return 0
}

// pinToLastCPU keeps this process on one CPU, as a sandbox's CPU limit
// (cpus: 1.0 in the built-in profile) keeps it to one CPU's worth: the
// flood is as fast as one CPU can send, and the gates get the rest of the
// host, as they do beside a real sandbox. Every thread there is now is
// pinned; threads started later inherit it.
func pinToLastCPU() error {
	var set unix.CPUSet
	set.Set(runtime.NumCPU() - 1)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin thread %d: %w", tid, err)
		}
	}
	return nil
}

type flooderProcess struct {
	cmd   *exec.Cmd
	stdin io.Closer
	out   strings.Builder
	began time.Time
}

// startFlooder runs this test binary as a flooder.
func startFlooder(b testing.TB, spec string) *flooderProcess {
	b.Helper()
	f := &flooderProcess{cmd: exec.Command(os.Args[0])}
	f.cmd.Env = append(os.Environ(), flooderEnv+"="+spec)
	f.cmd.Stdout, f.cmd.Stderr = &f.out, os.Stderr
	stdin, err := f.cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	f.stdin = stdin
	if err := f.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	f.began = time.Now()
	b.Cleanup(func() {
		if f.cmd.ProcessState == nil { // not stopped: a failed run
			f.stdin.Close()
			_ = f.cmd.Wait()
		}
	})
	return f
}

// stop ends the flood and returns what was sent and over how long.
func (f *flooderProcess) stop(b testing.TB) (int64, time.Duration) {
	f.stdin.Close()
	if err := f.cmd.Wait(); err != nil {
		b.Fatalf("flooder: %v", err)
	}
	took := time.Since(f.began)
	n, err := strconv.ParseInt(strings.TrimSpace(f.out.String()), 10, 64)
	if err != nil {
		b.Fatalf("flooder said %q", f.out.String())
	}
	return n, took
}

// udpFlood sends queries for name to addr from one socket as fast as it
// can, reading no answers, until ctx ends, and returns how many it sent.
func udpFlood(ctx context.Context, addr, name string) int {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	q, err := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA).Pack()
	if err != nil {
		return 0
	}
	sent := 0
	for id := uint16(0); ctx.Err() == nil; id++ {
		binary.BigEndian.PutUint16(q, id)
		if _, err := c.Write(q); err == nil {
			sent++
		}
	}
	return sent
}

// tcpFlood opens connections as fast as it can, sends nothing on them and
// keeps its last 32 open, as a client that wants to hold every place.
func tcpFlood(ctx context.Context, addr string) int {
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	n := 0
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		n++
		open = append(open, c)
		if len(open) > 32 {
			open[0].Close()
			open = open[1:]
		}
	}
	return n
}

// peakUse is the most heap, RSS and goroutines the process had.
type peakUse struct {
	heap, rss, goroutines atomic.Uint64
}

func (p *peakUse) sample(ctx context.Context, every time.Duration) {
	raise := func(v *atomic.Uint64, n uint64) {
		if n > v.Load() {
			v.Store(n)
		}
	}
	for {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		raise(&p.heap, ms.HeapInuse)
		raise(&p.rss, rss())
		raise(&p.goroutines, uint64(runtime.NumGoroutine()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// rss is the process's resident set from /proc/self/status, 0 if unknown.
func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
