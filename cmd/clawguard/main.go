// Command clawguard runs untrusted AI agents in hardened containerd sandboxes.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/netrules"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes of the CLI contract.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors that mean "the command line or the profile is
// wrong" (exit 2) rather than "something failed" (exit 1).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usage(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every command accepts.
type globals struct {
	containerdAddress string
	stateDir          string
	socket            string
	bridge            string
	subnet            string
	dnsUpstreams      []string
	probe             string
	debug             bool
	upstreamCA        string
	// service is set by the daemon command: a service's log is its
	// record (starts, adoptions, exits), so it logs from Info; the CLI
	// commands print their own results and log only warnings.
	service bool
	// sockets keeps the daemon's published ports across its restarts.
	sockets enforce.SocketStore
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := rootCmd(&globals{})
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee exitCodeError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "clawguard: "+strings.TrimPrefix(err.Error(), "clawguard: "))
	var ue usageError
	var pe *profiles.Error
	if errors.As(err, &ue) || errors.As(err, &pe) || isArgError(err) {
		return exitUsage
	}
	return exitFailure
}

// rootCmd is the command tree, its global flags bound to g.
func rootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "clawguard",
		Short: "Run untrusted AI agents in a hardened containerd sandbox",
		Long: `clawguard runs an AI agent (OpenClaw first) in a containerd sandbox with every
control of its threat model in force: non-root user, no capabilities, no new
privileges, a tightened seccomp profile, read-only root, noexec scratch space,
memory/CPU/pids limits, file-based secrets and a network namespace of its own.

Start with:
  clawguard profile init agent                      # the built-in OpenClaw profile and its hardened config
  clawguard profile validate agent/openclaw.yaml
  clawguard run --profile agent/openclaw.yaml --verify
  clawguard verify openclaw                         # again, any time: every control, proven on the live sandbox`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", "containerd socket")
	pf.StringVar(&g.stateDir, "state-dir", "/var/lib/clawguard", "where sandbox state and logs are kept")
	pf.StringVar(&g.socket, "socket", "/run/clawguard/clawguard.sock", "the daemon's API socket")
	pf.StringVar(&g.bridge, "bridge", "clawguard0", "bridge the sandboxes are attached to")
	pf.StringVar(&g.subnet, "subnet", "10.89.0.0/24", "IPv4 subnet of the bridge; the first address is the gateway and DNS gate")
	pf.StringSliceVar(&g.dnsUpstreams, "dns-upstream", nil, "DNS servers allowlisted names are resolved with, IP[:PORT] (default: the host's resolv.conf nameservers)")
	pf.StringVar(&g.probe, "probe", "", "the static verify probe mounted into every sandbox (default: cgprobe next to this binary, else "+installedProbe+")")
	pf.BoolVar(&g.debug, "debug", false, "log debug detail to stderr")
	pf.StringVar(&g.upstreamCA, "upstream-ca", "", "also trust the PEM certificates in this file for the hosts credentials are bound to (tests: the fake internet's API)")
	_ = pf.MarkHidden("upstream-ca")

	root.AddCommand(
		runCmd(g), stopCmd(g), statusCmd(g), verifyCmd(g), allowlistCmd(g), execCmd(g), logsCmd(g), profileCmd(g), reconcileCmd(g), volumeCmd(g), daemonCmd(g), versionCmd(), logWriterCmd(),
	)
	return root
}

// exitCodeError ends the process with a code and nothing more to print.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func isArgError(err error) bool {
	m := err.Error()
	return strings.HasPrefix(m, "unknown command") || strings.HasPrefix(m, "accepts ") ||
		strings.HasPrefix(m, "requires at least") || strings.HasPrefix(m, "unknown flag") ||
		strings.HasPrefix(m, "unknown shorthand flag")
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.service {
		level = slog.LevelInfo
	}
	if g.debug {
		level = slog.LevelDebug
	}
	if underJournal() {
		return slog.New(&journalHandler{level: level})
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// supervisor connects to containerd and returns a supervisor over it and
// the host network.
func (g *globals) supervisor(ctx context.Context, step func(string, time.Duration, error)) (*enforce.Supervisor, func(), error) {
	log := g.logger()
	subnet, err := netip.ParsePrefix(g.subnet)
	if err != nil {
		return nil, nil, usage("--subnet %q: %v (write e.g. 10.89.0.0/24)", g.subnet, err)
	}
	upstreams, err := dnsUpstreams(g.dnsUpstreams)
	if err != nil {
		return nil, nil, err
	}
	if err := enforce.CheckStateDir(g.stateDir); err != nil {
		return nil, nil, usage("--state-dir: %v", err)
	}
	host, err := netrules.NewHost(netrules.Config{Bridge: g.bridge, Subnet: subnet, StateDir: g.stateDir, KeepFlows: weakened("conntrack"), NoInnerLayer: weakened("inner-layer"), NoNameGate: weakened("name-gate")})
	if err != nil {
		return nil, nil, usage("%v", err)
	}
	rt, err := runtime.Connect(ctx, g.containerdAddress, log)
	if err != nil {
		return nil, nil, err
	}
	weaken, err := weakenOpts()
	if err != nil {
		rt.Close()
		return nil, nil, usage("%v", err)
	}
	cfg := enforce.Config{StateDir: g.stateDir, DNSUpstreams: upstreams, Log: log, Step: step, ProbePath: g.probePath(), ExtraSpecOpts: weaken, Sockets: g.sockets,
		NoBroker: weakened("credentials")}
	if g.upstreamCA != "" {
		if cfg.UpstreamCAs, err = upstreamCAs(g.upstreamCA); err != nil {
			rt.Close()
			return nil, nil, usage("--upstream-ca: %v", err)
		}
	}
	return enforce.New(cfg, rt, host), func() { rt.Close() }, nil
}

// upstreamCAs is the host's trust store and the certificates of file.
func upstreamCAs(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// installedProbe is where `make install` puts the verify probe.
const installedProbe = "/usr/local/libexec/clawguard/cgprobe"

// probePath finds the verify probe: --probe, else cgprobe beside this
// binary (a build tree), else the installed one.
func (g *globals) probePath() string {
	if g.probe != "" {
		return g.probe
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "cgprobe")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return installedProbe
}

// dnsUpstreams normalises --dns-upstream values to IP:PORT, or reads the
// host's resolv.conf when none were given.
func dnsUpstreams(flags []string) ([]string, error) {
	if len(flags) == 0 {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no --dns-upstream given and /etc/resolv.conf unreadable: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
				flags = append(flags, f[1])
			}
		}
		if len(flags) == 0 {
			return nil, fmt.Errorf("no nameserver in /etc/resolv.conf: pass --dns-upstream IP[:PORT]")
		}
	}
	var out []string
	for _, f := range flags {
		if ap, err := netip.ParseAddrPort(f); err == nil {
			out = append(out, ap.String())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, usage("--dns-upstream %q: want IP or IP:PORT", f)
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	return out, nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the clawguard version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "clawguard %s\n", version)
			return nil
		},
	}
}
