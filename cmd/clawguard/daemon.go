package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/enforce/daemon"
	"github.com/clawguard/clawguard/profiles"
)

// daemonConfig is /etc/clawguard/config.yaml: the global flags, and the
// daemon's own settings. Unknown keys are errors.
type daemonConfig struct {
	ContainerdAddress   string   `yaml:"containerd_address"`
	StateDir            string   `yaml:"state_dir"`
	Socket              string   `yaml:"socket"`
	SocketGroup         string   `yaml:"socket_group"`
	SandboxIDs          string   `yaml:"sandbox_ids"`
	Bridge              string   `yaml:"bridge"`
	Subnet              string   `yaml:"subnet"`
	DNSUpstream         []string `yaml:"dns_upstream"`
	Probe               string   `yaml:"probe"`
	StopSandboxesOnExit bool     `yaml:"stop_sandboxes_on_exit"`
	MetricsAddr         string   `yaml:"metrics_addr"`
	Sandboxes           []struct {
		Profile string `yaml:"profile"`
	} `yaml:"sandboxes"`
}

const defaultConfig = "/etc/clawguard/config.yaml"

func daemonCmd(g *globals) *cobra.Command {
	var configPath, metricsAddr string
	var stopOnExit bool
	cmd := &cobra.Command{
		Use:   "daemon [--config /etc/clawguard/config.yaml]",
		Short: "Run the host service that owns every sandbox",
		Long: `Run clawguard as the host service. At start it reconciles (removes whatever
belongs to no running sandbox) and adopts the sandboxes still running: their
DNS gates come back on the ports their rules already point at, so their rules
do not change. It then serves the API on --socket (mode 0600, root only, or
0660 for socket_group) for 'run --detach', 'stop', 'status' and 'verify', and tells
systemd it is ready.

On SIGTERM the sandboxes keep running and stay enforced by their kernel rules
(no name resolves until a daemon adopts them again); with
--stop-sandboxes-on-exit they are stopped and removed instead.

The config file takes the global flags as keys (containerd_address,
state_dir, socket, bridge, subnet, dns_upstream) plus socket_group,
sandbox_ids and stop_sandboxes_on_exit; flags given on the command line win.

Members of socket_group read status and verify. With sandbox_ids (a range of
ids no account uses, e.g. "2100000000-2100000999") they also start sandboxes and stop
their own: each member's sandboxes run as an id of that range that is the
member's alone, every path of the profile is opened with the member's own
permissions, and image archives and privileged host ports are refused. Sandboxes listed
under sandboxes ({profile: /etc/clawguard/profiles/NAME.yaml}) start with the
daemon and restart when they exit, with backoff (1s, 2s, 4s ... 1m); one that
restarts 5 times in 10 minutes is left stopped and reported as flapping.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g.service = true
			cfg, err := loadDaemonConfig(configPath, defaultConfig)
			if err != nil {
				return err
			}
			g.applyConfig(cmd, cfg)
			gid := -1
			if cfg.SocketGroup != "" {
				grp, err := user.LookupGroup(cfg.SocketGroup)
				if err != nil {
					return usage("%s: socket_group %q: %v", configPath, cfg.SocketGroup, err)
				}
				gid, _ = strconv.Atoi(grp.Gid)
			}
			if metricsAddr == "" {
				metricsAddr = cfg.MetricsAddr
			}
			dc := daemon.Config{Socket: g.socket, SocketGID: gid, StopSandboxesOnExit: stopOnExit || cfg.StopSandboxesOnExit, MetricsAddr: metricsAddr,
				NoFirewallGuard: weakened("firewall-guard")}
			if cfg.SandboxIDs != "" {
				rng, err := sandboxIDs(cfg.SandboxIDs, "/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid")
				if err != nil {
					return usage("%s: sandbox_ids: %v", configPath, err)
				}
				if gid < 0 {
					return usage("%s: sandbox_ids is set but socket_group is not: only root can reach the daemon, and root's sandboxes do not use the range", configPath)
				}
				dc.SandboxIDs, dc.IDBook = &rng, filepath.Join(g.stateDir, "sandbox-ids.json")
			}
			for i, sb := range cfg.Sandboxes {
				if !filepath.IsAbs(sb.Profile) {
					return usage("%s: sandboxes[%d].profile %q must be an absolute path", configPath, i, sb.Profile)
				}
				dc.Sandboxes = append(dc.Sandboxes, sb.Profile)
			}
			sockets := newFDStore()
			g.sockets = sockets
			return g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, _ *cobra.Command, _ []string) error {
				d := daemon.New(sup, dc, g.logger())
				return d.Run(ctx, func() {
					sockets.DropUntaken()
					sdNotify("READY=1")
				})
			})(cmd, nil)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", defaultConfig, "daemon configuration file (a missing default file is fine)")
	cmd.Flags().BoolVar(&stopOnExit, "stop-sandboxes-on-exit", false, "stop every sandbox when the daemon exits")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this loopback IP:PORT, e.g. 127.0.0.1:9464 (default: off)")
	return cmd
}

// sandboxIDs parses the sandbox_ids range and refuses one that overlaps an
// account of the host or anyone's subordinate ids: a sandbox would own that
// user's files, and the user the sandbox's. Missing subuid and subgid files
// are fine (no one has subordinate ids).
func sandboxIDs(s, passwd, group, subuid, subgid string) (daemon.IDRange, error) {
	rng, err := daemon.ParseIDRange(s)
	if err != nil {
		return rng, err
	}
	open := func(path string, optional bool) (io.Reader, func(), error) {
		f, err := os.Open(path)
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil, func() {}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	var readers [4]io.Reader
	for i, p := range []string{passwd, group, subuid, subgid} {
		r, done, err := open(p, i >= 2)
		if err != nil {
			return rng, err
		}
		defer done()
		readers[i] = r
	}
	taken, err := rng.Accounts(readers[0], readers[1])
	if err != nil {
		return rng, err
	}
	sub, err := rng.Subordinate(readers[2], readers[3])
	if err != nil {
		return rng, err
	}
	if taken = append(taken, sub...); len(taken) > 0 {
		return rng, fmt.Errorf("%s includes ids the host already gives out: %s; pick a range nobody uses (e.g. 2100000000-2100000999)", rng, strings.Join(taken, ", "))
	}
	return rng, nil
}

// loadDaemonConfig reads the daemon's config file. A missing file at the
// default path is an empty config, also when --config names it: the unit
// passes it explicitly and must start on a host where nobody wrote one. A
// missing file anywhere else is an error: someone meant that file.
func loadDaemonConfig(path, defaultPath string) (daemonConfig, error) {
	var cfg daemonConfig
	b, err := profiles.ReadRegular(path, profiles.MaxFileSize)
	if errors.Is(err, os.ErrNotExist) && filepath.Clean(path) == filepath.Clean(defaultPath) {
		return cfg, nil
	}
	if err != nil {
		return cfg, usage("config %s: %v", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, usage("config %s: %v (keys: containerd_address, state_dir, socket, socket_group, sandbox_ids, bridge, subnet, dns_upstream, stop_sandboxes_on_exit, metrics_addr, sandboxes)", path, err)
	}
	return cfg, nil
}

// applyConfig fills the globals the command line did not set.
func (g *globals) applyConfig(cmd *cobra.Command, c daemonConfig) {
	set := func(flag string, dst *string, v string) {
		if v != "" && !cmd.Flags().Changed(flag) {
			*dst = v
		}
	}
	set("containerd-address", &g.containerdAddress, c.ContainerdAddress)
	set("state-dir", &g.stateDir, c.StateDir)
	set("socket", &g.socket, c.Socket)
	set("bridge", &g.bridge, c.Bridge)
	set("subnet", &g.subnet, c.Subnet)
	set("probe", &g.probe, c.Probe)
	if len(c.DNSUpstream) > 0 && !cmd.Flags().Changed("dns-upstream") {
		g.dnsUpstreams = c.DNSUpstream
	}
}

// sdNotify tells systemd about the service's state when run under it.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.Dial("unixgram", addr)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}

// daemon returns a client if a daemon answers on the socket.
func (g *globals) daemon() (*api.Client, error) { return api.Dial(g.socket) }
