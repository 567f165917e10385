package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clawguard/clawguard/enforce"
)

// metrics reads, at each scrape, what the kernel enforces for the daemon's
// sandboxes (chain counters, set sizes) and what their DNS gates counted;
// start latency is observed as sandboxes start.
type metrics struct {
	d         *Daemon
	startTime prometheus.Histogram

	sandboxes, accepted, denied, setSize, dnsAnswered, dnsRefused, refreshErrors, firewallRestores, tlsConns *prometheus.Desc
}

func newMetrics(d *Daemon) *metrics {
	label := []string{"sandbox"}
	return &metrics{
		d: d,
		startTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clawguard_sandbox_start_seconds", Help: "Time to start a sandbox with every control in force.",
			Buckets: []float64{.05, .1, .15, .2, .3, .5, 1, 2, 5},
		}),
		sandboxes:     prometheus.NewDesc("clawguard_sandboxes", "Sandboxes this daemon supervises.", nil, nil),
		accepted:      prometheus.NewDesc("clawguard_packets_accepted_total", "Packets the sandbox's chain accepted.", label, nil),
		denied:        prometheus.NewDesc("clawguard_packets_denied_total", "Packets the sandbox's chain dropped.", label, nil),
		setSize:       prometheus.NewDesc("clawguard_allowlist_set_entries", "Entries in the sandbox's allowlist set.", label, nil),
		dnsAnswered:   prometheus.NewDesc("clawguard_dns_answers_total", "Allowlisted DNS answers the gate installed and released.", label, nil),
		dnsRefused:    prometheus.NewDesc("clawguard_dns_refused_total", "DNS queries the gate refused without asking upstream.", label, nil),
		refreshErrors: prometheus.NewDesc("clawguard_dns_refresh_errors_total", "Failed resolutions of allowlisted names.", label, nil),
		tlsConns: prometheus.NewDesc("clawguard_name_gate_connections_total",
			"TLS connections the name gate judged: result is passed, or why it refused (not_allowlisted, not_resolved, expired, no_name, not_tls, ...).",
			[]string{"sandbox", "result"}, nil),
		firewallRestores: prometheus.NewDesc("clawguard_firewall_restores_total",
			"Times the host's rules were found changed (a firewall reload, a rule above ours) and clawguard's were put back.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.startTime.Describe(ch)
	for _, d := range []*prometheus.Desc{m.sandboxes, m.accepted, m.denied, m.setSize, m.dnsAnswered, m.dnsRefused, m.refreshErrors, m.firewallRestores, m.tlsConns} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.startTime.Collect(ch)
	m.d.mu.Lock()
	running := make(map[string]*enforce.Started, len(m.d.running))
	for n, st := range m.d.running {
		running[n] = st
	}
	m.d.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.sandboxes, prometheus.GaugeValue, float64(len(running)))
	ch <- prometheus.MustNewConstMetric(m.firewallRestores, prometheus.CounterValue, float64(m.d.sup.FirewallRestores()))
	for name, st := range running {
		n := m.d.sup.Numbers(st)
		if n.HaveRules {
			ch <- prometheus.MustNewConstMetric(m.accepted, prometheus.CounterValue, float64(n.Accepted), name)
			ch <- prometheus.MustNewConstMetric(m.denied, prometheus.CounterValue, float64(n.Denied), name)
		}
		if n.HaveSet {
			ch <- prometheus.MustNewConstMetric(m.setSize, prometheus.GaugeValue, float64(n.SetSize), name)
		}
		if n.HaveEgress {
			ch <- prometheus.MustNewConstMetric(m.dnsAnswered, prometheus.CounterValue, float64(n.DNSAnswered), name)
			ch <- prometheus.MustNewConstMetric(m.dnsRefused, prometheus.CounterValue, float64(n.DNSRefused), name)
			ch <- prometheus.MustNewConstMetric(m.refreshErrors, prometheus.CounterValue, float64(n.RefreshErr), name)
			ch <- prometheus.MustNewConstMetric(m.tlsConns, prometheus.CounterValue, float64(n.TLSPassed), name, "passed")
			for reason, count := range n.TLSRefusedBy {
				ch <- prometheus.MustNewConstMetric(m.tlsConns, prometheus.CounterValue, float64(count), name, reason)
			}
		}
	}
}

// listen binds the metrics address, which must be loopback: the metrics
// name every sandbox and what it was denied.
func (m *metrics) listen(addr string) (net.Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: want IP:PORT, e.g. 127.0.0.1:9464", addr)
	}
	if !ap.Addr().IsLoopback() {
		return nil, fmt.Errorf("metrics address %s is not loopback; serve metrics on 127.0.0.1 and let a local agent scrape them", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// serve answers /metrics on ln until ctx ends.
func (m *metrics) serve(ctx context.Context, ln net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	_ = srv.Serve(ln)
}
