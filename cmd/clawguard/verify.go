package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/verify"
)

// verifyFlags are shared by `verify` and `run --verify`.
type verifyFlags struct {
	blocked []string
	timeout time.Duration
}

func (v *verifyFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&v.blocked, "blocked-probe", nil, "IP:PORT outside the allowlist that must not answer the sandbox; repeatable (default: the DNS upstreams)")
	cmd.Flags().DurationVar(&v.timeout, "probe-timeout", 1500*time.Millisecond, "how long a connection attempt may take before it counts as blocked")
}

func (v *verifyFlags) options() enforce.VerifyOptions {
	return enforce.VerifyOptions{BlockedProbes: v.blocked, Timeout: v.timeout}
}

// verify asks the daemon when one answers (its socket group may verify
// without root) and verifies directly otherwise.
func (g *globals) verify(ctx context.Context, name string, vf *verifyFlags) (v *enforce.Verification, err error) {
	err = g.viaDaemon(ctx, func(c *api.Client) error {
		v = &enforce.Verification{}
		req := api.VerifyRequest{BlockedProbes: vf.blocked, TimeoutMs: int(vf.timeout / time.Millisecond)}
		return c.Do(ctx, "POST", "/v1/sandboxes/"+url.PathEscape(name)+"/verify", req, v)
	}, func(sup *enforce.Supervisor) (err error) {
		v, err = sup.Verify(ctx, name, vf.options())
		return err
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func verifyCmd(g *globals) *cobra.Command {
	var vf verifyFlags
	var asJSON, wide bool
	cmd := &cobra.Command{
		Use:   "verify NAME",
		Short: "Prove, from inside the sandbox and from the host, that every control is in force",
		Long: `Verify runs clawguard's probe inside the running sandbox, as the agent's own
user under the same seccomp profile, capabilities and network, and checks from
the host what the sandbox cannot see. When the daemon runs, it does the work
(members of its socket group may verify without root); otherwise this
command does, as root. Every control of the threat model is
tested for real: the user, capabilities, no_new_privs and seccomp; every
dangerous syscall; read-only root, noexec scratch space and masked /proc
paths; namespaces and cgroup limits; secrets; raw sockets; egress to a
destination outside the allowlist, the allowlisted names themselves, direct
DNS, cloud metadata, private ranges, IPv6, host ports and other sandboxes;
published ports; and, for OpenClaw, its own hardened configuration.

A check that is blocked but whose destination does not answer the host
either is a WARN: silence proves nothing. Pass --blocked-probe with a
destination the host can reach (it is never reached from the sandbox if
the rules hold).

Exit status: 0 when no check failed (warnings allowed), 1 when one did, 2
for a bad command line.`,
		Example: `  clawguard verify openclaw
  clawguard verify openclaw --blocked-probe 93.184.215.14:443 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.verify(cmd.Context(), args[0], &vf)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return err
				}
			} else {
				printVerification(cmd.OutOrStdout(), v, wide)
			}
			if !v.Passed {
				return exitCodeError{exitFailure}
			}
			return nil
		},
	}
	vf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the results as JSON")
	cmd.Flags().BoolVar(&wide, "wide", false, "do not shorten what was expected and seen")
	return cmd
}

// printVerification renders the results as a table, then the full text of
// every check that did not pass.
func printVerification(w io.Writer, v *enforce.Verification, wide bool) {
	counts := map[verify.Status]int{}
	for _, r := range v.Results {
		counts[r.Status]++
	}
	fmt.Fprintf(w, "clawguard verify %s: %d checks, %d passed, %d failed, %d warnings (%s)\n\n",
		v.Sandbox, len(v.Results), counts[verify.Pass], counts[verify.Fail], counts[verify.Warn], v.Took.Round(10*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tEXPECTED\tSEEN")
	short := func(s string, n int) string {
		if r := []rune(s); !wide && len(r) > n {
			return string(r[:n-1]) + "…"
		}
		return s
	}
	for _, r := range v.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Status, short(r.Expected, 44), short(r.Seen, 60))
	}
	tw.Flush()
	var notes []string
	for _, r := range v.Results {
		if r.Status != verify.Pass && !wide {
			notes = append(notes, fmt.Sprintf("  %s %s (%s)\n    expected: %s\n    seen:     %s", r.Status, r.ID, r.Title, r.Expected, r.Seen))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
}
