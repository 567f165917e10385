package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/profiles"
	"github.com/clawguard/clawguard/runtime"
)

func stopCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME [--timeout 10s]",
		Short: "Stop a sandbox and remove everything it created",
		Long: `Stop a sandbox: SIGTERM to its processes, SIGKILL to all of them after the
timeout (default: the profile's stop_timeout), then remove its task, container,
snapshot, secrets and network namespace. Also cleans up what a crashed
'clawguard run' left behind. The log stays (see 'clawguard logs').`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			start := time.Now()
			// A daemon supervising the sandbox stops it itself, so that its
			// watcher and DNS gate go with it.
			if c, err := g.daemon(); err == nil {
				path := "/v1/sandboxes/" + url.PathEscape(args[0])
				if timeout > 0 {
					path += "?timeout=" + timeout.String()
				}
				if err := c.Do(cmd.Context(), "DELETE", path, nil, nil); err != nil {
					if errors.Is(err, api.ErrNotFound) {
						return fmt.Errorf("no sandbox named %q (see `clawguard status`)", args[0])
					}
					return err
				}
			} else if err := g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, _ *cobra.Command, args []string) error {
				return sup.Stop(ctx, args[0], timeout)
			})(cmd, args); err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					return fmt.Errorf("no sandbox named %q (see `clawguard status`)", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "clawguard: sandbox %s stopped and removed (%s)\n", args[0], time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "time between SIGTERM and SIGKILL (default: the profile's stop_timeout)")
	return cmd
}

func statusCmd(g *globals) *cobra.Command {
	var asJSON, rules bool
	cmd := &cobra.Command{
		Use:   "status [NAME] [--json]",
		Short: "Show sandboxes: state, address, packets, allowlist and what was denied",
		Long: `Show every sandbox (or one): its state as containerd reports it, pid, uptime,
address, packets its chain accepted and denied, image and limits.

With NAME (or --rules), also every allowlist entry with the addresses it opens
now, how long each stays allowed and where it came from (startup resolve,
refresh, proxied query), the DNS queries that were refused, answers dropped
for pointing at private or metadata addresses, and the last denied connection
attempts. --rules adds the live iptables rules and ip set members that enforce
it. Leftovers are shown, not hidden. --json prints the same data for machines.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			list, err := g.status(ctx, name, rules)
			if err != nil {
				if errors.Is(err, runtime.ErrNotFound) {
					return fmt.Errorf("no sandbox named %q", name)
				}
				return err
			}
			if asJSON {
				if list == nil {
					list = []enforce.Status{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			printStatus(cmd.OutOrStdout(), list)
			if name != "" || rules {
				for _, st := range list {
					printEgress(cmd.OutOrStdout(), st, rules)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&rules, "rules", false, "also show the rules that enforce egress")
	return cmd
}

func printStatus(w io.Writer, list []enforce.Status) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no sandboxes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tUPTIME\tIP\tACCEPTED\tDENIED\tIMAGE\tMEMORY\tCPUS\tPIDS")
	for _, s := range list {
		accepted, denied := "-", "-"
		if s.Packets != nil {
			accepted, denied = fmt.Sprint(s.Packets.Accepted), fmt.Sprint(s.Packets.Denied)
		}
		mem, cpus, pids := "-", "-", "-"
		if s.MemoryBytes > 0 {
			mem, cpus, pids = profiles.FormatSize(s.MemoryBytes), fmt.Sprint(s.CPUs), fmt.Sprint(s.Pids)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, dash(s.Pid), uptime(s.UptimeSeconds),
			orDash(s.IP), accepted, denied, s.Image, mem, cpus, pids)
	}
	tw.Flush()
	for _, s := range list {
		if s.Problem != "" {
			fmt.Fprintf(w, "! %s: %s\n", s.Name, s.Problem)
		}
	}
}

// printEgress shows one sandbox's allowlist as it is enforced now, and what
// it was refused.
func printEgress(w io.Writer, s enforce.Status, rules bool) {
	fmt.Fprintf(w, "\n%s: allowlist (everything else is denied)\n", s.Name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ENTRY\tPORTS\tADDRESS\tEXPIRES IN\tNAME\tSOURCE")
	for _, a := range s.Allowlist {
		entry := a.Host
		if a.CIDR != "" {
			entry = a.CIDR
		}
		ports := strings.Trim(fmt.Sprint(a.Ports), "[]")
		if len(a.Protocols) > 0 && !slices.Equal(a.Protocols, []string{"tcp"}) {
			ports += "/" + strings.Join(a.Protocols, "+")
		}
		switch {
		case a.CIDR != "":
			fmt.Fprintf(tw, "  %s\t%s\t%s\tstatic\t-\tcidr\n", entry, ports, a.CIDR)
		case len(a.Addresses) == 0:
			fmt.Fprintf(tw, "  %s\t%s\t(none now)\t-\t-\t-\n", entry, ports)
		}
		for _, ad := range a.Addresses {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", entry, ports, ad.Address, (time.Duration(ad.ExpiresInSeconds) * time.Second).String(), ad.Name, ad.Source)
		}
	}
	tw.Flush()
	header := false
	for _, a := range s.Allowlist {
		if a.Wildcard == nil {
			continue
		}
		if !header {
			fmt.Fprintf(w, "%s: wildcards (every name asked under one is sent to that zone's nameservers)\n", s.Name)
			tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			header = true
		}
		fmt.Fprintf(tw, "  %s\t%d of %d names\tat most %d new a minute\n", a.Host, a.Wildcard.Names, a.Wildcard.MaxNames, a.Wildcard.NewNamesPerMinute)
	}
	if header {
		tw.Flush()
	}
	if len(s.RefusedQueries) > 0 {
		fmt.Fprintf(w, "%s: refused DNS queries (last %d names)\n", s.Name, len(s.RefusedQueries))
		for _, r := range s.RefusedQueries {
			times := ""
			if r.Count > 1 {
				times = fmt.Sprintf(" x%d", r.Count)
			}
			fmt.Fprintf(w, "  %s  %-5s %s  (%s)%s\n", r.Time.Local().Format("15:04:05"), r.Type, r.Name, r.Reason, times)
		}
	}
	if g := s.NameGate; g != nil {
		ports := make([]string, len(g.Ports))
		for i, p := range g.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		if len(ports) > 0 {
			var by []string
			for _, k := range slices.Sorted(maps.Keys(g.RefusedBy)) {
				by = append(by, fmt.Sprintf("%d %s", g.RefusedBy[k], k))
			}
			refused := strconv.FormatUint(g.Refused, 10) + " refused"
			if len(by) > 0 {
				refused += " (" + strings.Join(by, ", ") + ")"
			}
			fmt.Fprintf(w, "%s: name gate on %s/tcp: %d TLS connections passed, %s\n", s.Name, strings.Join(ports, ","), g.Passed, refused)
		}
		if len(g.ByAddress) > 0 {
			fmt.Fprintf(w, "%s: by address only, past the name gate (tls: false): %s\n", s.Name, strings.Join(g.ByAddress, ", "))
		}
		for _, r := range g.Refusals {
			name := r.ServerName
			if name == "" {
				name = "(no name)"
			}
			fmt.Fprintf(w, "  %s  %s -> %s  (%s)\n", r.Time.Local().Format("15:04:05"), name, r.Destination, r.Reason)
		}
	}
	if len(s.DroppedAnswers) > 0 {
		fmt.Fprintf(w, "%s: answers dropped for pointing at forbidden ranges\n", s.Name)
		for _, d := range s.DroppedAnswers {
			fmt.Fprintf(w, "  %s  %s -> %s  (%s)\n", d.Time.Local().Format("15:04:05"), d.Name, d.Addr, d.Range)
		}
	}
	if len(s.DeniedPackets) > 0 {
		fmt.Fprintf(w, "%s: denied connection attempts (last %d)\n", s.Name, len(s.DeniedPackets))
		for _, d := range s.DeniedPackets {
			name := ""
			if d.Name != "" {
				name = "  (" + d.Name + ")"
			}
			fmt.Fprintf(w, "  %s  %s %s:%d%s\n", d.Time.Local().Format("15:04:05"), d.Protocol, d.Dst, d.Port, name)
		}
	}
	if rules {
		fmt.Fprintf(w, "%s: rules in force\n", s.Name)
		for _, r := range s.Rules {
			fmt.Fprintln(w, "  "+r)
		}
		fmt.Fprintf(w, "%s: allowlist set members (%d)\n", s.Name, len(s.SetMembers))
		for _, m := range s.SetMembers {
			exp := (time.Duration(m.Seconds) * time.Second).String()
			if m.Infinite {
				exp = "static"
			}
			fmt.Fprintf(w, "  %s,%s:%d  %s\n", m.Addr, m.Proto, m.Port, exp)
		}
	}
}

func dash(pid uint32) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func uptime(secs float64) string {
	if secs <= 0 {
		return "-"
	}
	return (time.Duration(secs) * time.Second).String()
}

func execCmd(g *globals) *cobra.Command {
	var interactive bool
	cmd := &cobra.Command{
		Use:   "exec NAME [-i] -- CMD [ARG...]",
		Short: "Run a command inside a running sandbox, under all of its controls",
		Long: `Run a command inside a running sandbox as the sandbox's user, with its
capabilities (none), seccomp profile, namespaces and limits. The exit status
is the command's. -i passes standard input through.`,
		Example: `  clawguard exec openclaw -- id
  clawguard exec openclaw -- sh -c 'ls -l /workspace'`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usage("write the command after --, e.g. clawguard exec %s -- id", args[0])
			}
			return g.withSupervisor(func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error {
				return execIn(ctx, sup, cmd, args, interactive)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass standard input to the command")
	return cmd
}

func execIn(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string, interactive bool) error {
	var stdin io.Reader
	if interactive {
		stdin = cmd.InOrStdin()
	}
	code, err := sup.Exec(ctx, args[0], args[1:], stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("no running sandbox named %q (see `clawguard status`)", args[0])
		}
		return err
	}
	if code != 0 {
		return exitCodeError{code}
	}
	return nil
}

func logsCmd(g *globals) *cobra.Command {
	var follow, raw bool
	cmd := &cobra.Command{
		Use:   "logs NAME [--follow] [--raw]",
		Short: "Print a sandbox's output (kept after it stops)",
		Long: `Print what the sandbox wrote to stdout and stderr. The agent wrote it, so on
a terminal every control character but newline and tab (escape sequences,
carriage returns, backspaces) is shown as \xNN instead of acting on the
terminal; --raw prints the bytes as written. Piped output is always raw.

The log is capped by the profile's logs section (max_size per file, keep
older files; 10M and 2 by default), so what is shown is the newest output,
at most (keep+1) x max_size of it: the older files first, oldest first,
then the current one. --follow goes on across rotations; an agent that
fills more than a whole file between two reads (0.1 s apart) has the files
in between skipped. The last file of the sandbox's previous run is kept
apart as NAME.log.prev in the logs directory and is not printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			if err := profiles.ValidName(args[0]); err != nil {
				return usage("%v", err)
			}
			path := enforce.LogPathIn(g.stateDir, args[0])
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("no log for sandbox %q at %s", args[0], path)
			}
			stop := make(chan struct{})
			if follow {
				// Stop following when the sandbox ends, if it is running now.
				if sup, closeFn, err := g.supervisor(ctx, nil); err == nil {
					defer closeFn()
					if exitC, err := sup.Wait(ctx, args[0]); err == nil {
						go func() {
							select {
							case <-exitC:
							case <-ctx.Done():
							}
							close(stop)
						}()
					}
				}
			}
			out, flush := agentOutput(cmd.OutOrStdout(), raw)
			defer flush()
			return enforce.FollowLog(ctx, path, out, true, follow, stop)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the sandbox exits or Ctrl-C")
	cmd.Flags().BoolVar(&raw, "raw", false, "on a terminal too, print the output's bytes as written, escape sequences included")
	return cmd
}

func profileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Validate profiles and show the built-in ones",
	}
	var asJSON bool
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a profile completely without creating anything",
		Long: `Check a profile the way 'run' does before it creates anything: strict YAML
(unknown keys and wrong types are errors), every value in range, mount and
secret sources against the host policy (after resolving symlinks), the
seccomp file if one is named. Every problem is listed with its field and a fix.
Exit status 0 when valid, 2 when not.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := profiles.Load(args[0])
			if err == nil {
				err = profiles.Validate(p, enforce.Policy(g.stateDir))
			}
			var pe *profiles.Error
			if asJSON {
				res := struct {
					Valid  bool                  `json:"valid"`
					File   string                `json:"file"`
					Errors []profiles.FieldError `json:"errors"`
				}{Valid: err == nil, File: args[0], Errors: []profiles.FieldError{}}
				if errors.As(err, &pe) {
					res.Errors = pe.Fields
				} else if err != nil {
					return err
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
				if !res.Valid {
					return exitCodeError{exitUsage}
				}
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (sandbox %s, image %s)\n", args[0], p.Name, p.Image)
			return nil
		},
	}
	validate.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	show := &cobra.Command{
		Use:   "show [NAME]",
		Short: "Print a built-in profile (default: openclaw), to copy and edit",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := profiles.DefaultName
			if len(args) == 1 {
				name = args[0]
			}
			b, err := profiles.BuiltinYAML(name)
			if err != nil {
				return usage("no built-in profile %q (built-in: %v)", name, profiles.Builtins())
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.AddCommand(validate, show, profileInitCmd())
	return cmd
}

func profileInitCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "init [DIR]",
		Short: "Write a built-in profile and everything it needs into a directory",
		Long: `Write a built-in profile (default: openclaw) into DIR (default: the current
directory) as NAME.yaml, with what it needs: for OpenClaw the hardened
configuration (config/openclaw.json, config/exec-approvals.json), the command
allowlist change log, a random gateway token in secrets/, and the workspace and
state directories owned by the sandbox user. Existing files are kept.`,
		Example: `  mkdir agent && cd agent && sudo clawguard profile init
  sudo clawguard run --profile openclaw.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(abs, 0o755); err != nil {
				return err
			}
			res, err := profiles.Init(name, abs, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, f := range res.Written {
				fmt.Fprintln(out, "wrote", filepath.Join(dir, f))
			}
			for _, f := range res.Kept {
				fmt.Fprintln(out, "kept ", filepath.Join(dir, f), "(exists)")
			}
			fmt.Fprintf(out, "next: clawguard run --profile %s\n", filepath.Join(dir, name+".yaml"))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", profiles.DefaultName, "built-in profile to write")
	return cmd
}

// withSupervisor gives a command a supervisor connected to containerd and a
// context that Ctrl-C cancels, and closes the connection afterwards.
// viaDaemon does a command's work in the daemon when one answers on the
// socket (so its socket group may use it, and its sandboxes stay its own),
// else in this process with a supervisor of its own.
func (g *globals) viaDaemon(ctx context.Context, remote func(*api.Client) error, local func(*enforce.Supervisor) error) error {
	c, err := g.daemon()
	if err == nil {
		return remote(c)
	}
	if !errors.Is(err, api.ErrNoDaemon) {
		return err
	}
	sup, closeFn, err := g.supervisor(ctx, nil)
	if err != nil {
		return err
	}
	defer closeFn()
	return local(sup)
}

func (g *globals) status(ctx context.Context, name string, rules bool) (list []enforce.Status, err error) {
	err = g.viaDaemon(ctx, func(c *api.Client) error {
		q := url.Values{}
		if name != "" {
			q.Set("name", name)
		}
		if rules {
			q.Set("rules", "1")
		}
		err := c.Do(ctx, "GET", "/v1/sandboxes?"+q.Encode(), nil, &list)
		if errors.Is(err, api.ErrNotFound) {
			return runtime.ErrNotFound
		}
		return err
	}, func(sup *enforce.Supervisor) (err error) {
		list, err = sup.Status(ctx, name, time.Now(), rules)
		return err
	})
	return list, err
}

func (g *globals) reconcile(ctx context.Context) (rep enforce.ReconcileReport, err error) {
	err = g.viaDaemon(ctx, func(c *api.Client) error {
		return c.Do(ctx, "POST", "/v1/reconcile", nil, &rep)
	}, func(sup *enforce.Supervisor) (err error) {
		rep, err = sup.Reconcile(ctx)
		return err
	})
	return rep, err
}

func (g *globals) withSupervisor(fn func(ctx context.Context, sup *enforce.Supervisor, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		sup, closeFn, err := g.supervisor(ctx, nil)
		if err != nil {
			return err
		}
		defer closeFn()
		return fn(ctx, sup, cmd, args)
	}
}

func reconcileCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "reconcile [--json]",
		Short: "Remove everything of ours that belongs to no live sandbox, and say what",
		Long: `Make the host hold exactly the objects of the live sandboxes. A sandbox is live
when its container has a task (it keeps running, and its rules stay in force,
even if the clawguard that started it died). Everything else of ours is
removed: sandboxes whose task is gone, containers labelled clawguard.sandbox
with no state, iptables chains and rules, ip sets, veths, network namespaces
and address leases named after no live sandbox, and snapshots no container
uses. Objects of another clawguard on the same host (sandboxes on another
bridge) are left alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			start := time.Now()
			rep, err := g.reconcile(ctx)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(rep); jerr != nil {
					return jerr
				}
				return err
			}
			out := cmd.OutOrStdout()
			for _, r := range rep.Removed {
				fmt.Fprintln(out, "removed", r)
			}
			fmt.Fprintf(out, "reconciled in %s: %d live sandbox(es) kept, %d object(s) removed\n",
				time.Since(start).Round(time.Millisecond), len(rep.Kept), len(rep.Removed))
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
