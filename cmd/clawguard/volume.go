package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawguard/clawguard/enforce"
	"github.com/clawguard/clawguard/enforce/api"
	"github.com/clawguard/clawguard/profiles"
)

func volumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume ls|rm",
		Short: "List and remove sandboxes' size-capped volumes",
		Long: `A volume is writable storage of a fixed size that a profile asks for
(volumes: [{name: workspace, target: /workspace, size: 2G}]). clawguard keeps
it for the sandbox name as an ext4 image of exactly that size under the state
directory, reserved on the host's disk when it is first made, so an agent that
fills it gets "No space left on device" and the host and the other sandboxes
write on. It outlives the sandbox: the next run under the same name finds what
was left in it.

While the sandbox runs, reach the files with 'clawguard exec NAME -- ...'.
Root can read a stopped sandbox's volume on the host with
  mount -o loop,ro,nosuid,nodev,noexec IMAGE DIR
(IMAGE as 'clawguard volume ls' shows it). Members of the socket group see
and remove only their own volumes, and may have ` + profiles.FormatSize(enforce.MemberVolumeBudget) + ` of them together.`,
	}
	cmd.AddCommand(volumeLsCmd(g), volumeRmCmd(g))
	return cmd
}

func volumeLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List volumes: sandbox, name, size, what is used, whose, where the image is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			var list []enforce.VolumeStatus
			err := g.viaDaemon(ctx, func(c *api.Client) error {
				return c.Do(ctx, "GET", "/v1/volumes", nil, &list)
			}, func(sup *enforce.Supervisor) (err error) {
				list, err = sup.Volumes(0)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []enforce.VolumeStatus{}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			printVolumes(cmd.OutOrStdout(), list)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printVolumes(w io.Writer, list []enforce.VolumeStatus) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no volumes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX\tVOLUME\tSIZE\tUSED\tOWNER\tIN USE\tIMAGE")
	for _, v := range list {
		used := fmt.Sprintf("%s (%d%%)", humanBytes(v.UsedBytes), v.UsedBytes*100/max(v.SizeBytes, 1))
		if v.Err != "" {
			used = "? (" + v.Err + ")"
		}
		inUse := "no"
		if v.InUse {
			inUse = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Sandbox, v.Name, profiles.FormatSize(v.SizeBytes), used, v.Owner, inUse, v.Image)
	}
	tw.Flush()
}

func volumeRmCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm SANDBOX [VOLUME...]",
		Short: "Remove a stopped sandbox's volumes and everything in them",
		Long: `Remove the named volumes of SANDBOX (all of its volumes when none is named),
with everything the agent left in them, and give their space back to the host.
A sandbox that exists keeps its volumes: stop it first.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			start := time.Now()
			for _, n := range args {
				if err := profiles.ValidName(n); err != nil {
					return usageError{err}
				}
			}
			sandbox, names := args[0], args[1:]
			var removed []string
			err := g.viaDaemon(ctx, func(c *api.Client) error {
				q := url.Values{"volume": names}
				return c.Do(ctx, "DELETE", "/v1/volumes/"+url.PathEscape(sandbox)+"?"+q.Encode(), nil, &removed)
			}, func(sup *enforce.Supervisor) (err error) {
				removed, err = sup.RemoveVolumes(ctx, sandbox, names, 0)
				return err
			})
			if err != nil {
				return err
			}
			for _, n := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed volume %s of sandbox %s\n", n, sandbox)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "clawguard: %d volume(s) removed (%s)\n", len(removed), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	return cmd
}

// humanBytes writes a byte count in the largest binary unit, one decimal.
func humanBytes(b int64) string {
	const units = "KMGT"
	if b < 1024 {
		return fmt.Sprintf("%dB", b)
	}
	v, i := float64(b)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v, i = v/1024, i+1
	}
	return fmt.Sprintf("%.1f%ciB", v, units[i])
}
