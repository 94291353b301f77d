package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/throttle-dev/throttle/cluster"
	"github.com/throttle-dev/throttle/engine"
	"github.com/throttle-dev/throttle/internal/human"
)

// newLimitCmd is `throttle limit`: named limits in Redis that several jobs share.
func newLimitCmd(env *Env) *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "limit set|get|ls|rm",
		Short: "Named limits shared by jobs: one API quota, many backfills",
		Long: `A named limit lives in Redis: a rate with its burst, a cap on calls in flight,
and optionally tokens per minute (an LLM provider's limit). Every job started with
  throttle run … --limit NAME --redis URL
takes a slot and a token from it for each call, besides its own knobs (the tighter
of the two binds). Two jobs that both want more than the limit get equal shares,
or shares by weight (--limit NAME:2). 'limit set' on a limit in use changes it for
every job at once. A job that dies gives its slots back after the limit's lease.`,
		Example: `  export REDIS=redis://127.0.0.1:6379/0
  throttle limit set tmdb --rate 50/s --burst 5 --parallelism 128 --redis $REDIS
  throttle run http --input movies.txt --limit tmdb --redis $REDIS \
      --url 'https://api.example.com/3/movie/{item}'
  throttle limit ls --redis $REDIS`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.PersistentFlags().StringVar(&url, "redis", "", "the Redis that holds the shared limits (redis://HOST:6379/0) (required)")
	connect := func(cmd *cobra.Command) (*cluster.Limits, error) {
		if url == "" {
			return nil, usageError("%s needs --redis URL: the Redis that holds the shared limits", cmd.CommandPath())
		}
		l, err := cluster.ConnectLimits(cmd.Context(), url)
		if err != nil {
			return nil, &exitError{code: ExitFailures, err: err}
		}
		return l, nil
	}
	cmd.AddCommand(newLimitSetCmd(env, connect), newLimitGetCmd(env, connect), newLimitLsCmd(env, connect), newLimitRmCmd(env, connect))
	return cmd
}

type limitConnect func(cmd *cobra.Command) (*cluster.Limits, error)

// limitBy names who changes a limit, for `limit get` and the jobs' logs: host/pid.
func limitBy() string {
	h, _ := os.Hostname()
	return h + "/" + strconv.Itoa(os.Getpid())
}

func newLimitSetCmd(env *Env, connect limitConnect) *cobra.Command {
	var rate, lease string
	var burst, parallelism int
	var tpm float64
	cmd := &cobra.Command{
		Use:   "set NAME [--rate R] [--burst B] [--parallelism N] [--tpm T] [--lease D]",
		Short: "Create a shared limit, or change one (every job that uses it follows at once)",
		Long: `Create the named limit, or change the knobs given (the others stay as they are).
The jobs that use it hear of the change on the limit's channel and apply it from
their next call: a raised limit counts at once, a lowered one starts no call above
it and cancels none.

  --rate R          calls per second across the jobs: 50, 50/s, 3000/m (0: none)
  --burst B         calls the rate allows at once (default 1)
  --parallelism N   calls in flight across the jobs (0: none)
  --tpm T           tokens per minute across the jobs: each call takes its estimate
  --lease D         how long a dead job's slots stay taken (default 10s;
                    live calls renew theirs)`,
		Example: `  export REDIS=redis://127.0.0.1:6379/0
  throttle limit set tmdb --rate 50/s --burst 5 --parallelism 128 --redis $REDIS
  throttle limit set tmdb --rate 200/s --redis $REDIS
  throttle limit set openai --rate 500/m --tpm 60000 --parallelism 16 \
      --redis $REDIS`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !cluster.ValidName(name) {
				return usageError("limit name %q: want letters, digits, '-', '_' or '.' (1 to 64)", name)
			}
			var s cluster.LimitSet
			f := cmd.Flags()
			if f.Changed("rate") {
				r, err := engine.ParseRate(rate)
				if err != nil {
					return usageError("--rate: %v", err)
				}
				s.Rate = &r
			}
			if f.Changed("burst") {
				s.Burst = &burst
			}
			if f.Changed("parallelism") {
				s.Parallelism = &parallelism
			}
			if f.Changed("tpm") {
				s.TPM = &tpm
			}
			if f.Changed("lease") {
				d, err := time.ParseDuration(lease)
				if err != nil {
					return usageError("--lease: %v", err)
				}
				s.Lease = &d
			}
			if s == (cluster.LimitSet{}) {
				return usageError("limit set %s: nothing to set; give --rate, --burst, --parallelism, --tpm or --lease", name)
			}
			l, err := connect(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = l.Close() }() // the command's own answer came back; this drops the connection
			created, changes, err := l.Set(cmd.Context(), name, limitBy(), s)
			switch {
			case errors.Is(err, cluster.ErrRedis):
				return &exitError{code: ExitFailures, err: err}
			case err != nil:
				return usageError("limit set %s: %v", name, err)
			}
			info, err := l.Get(cmd.Context(), name)
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			switch {
			case created:
				fmt.Fprintf(env.Stdout, "limit %s created: %s\n", name, info.LimitConfig)
			case len(changes) == 0:
				fmt.Fprintf(env.Stdout, "limit %s unchanged: %s\n", name, info.LimitConfig)
			default:
				parts := make([]string, len(changes))
				for i, c := range changes {
					parts[i] = c.String()
				}
				users := "no job uses it now"
				switch n := info.AliveJobs(); {
				case n == 1:
					users = "1 job uses it now and follows at once"
				case n > 1:
					users = fmt.Sprintf("%d jobs use it now and follow at once", n)
				}
				fmt.Fprintf(env.Stdout, "limit %s: %s; %s\n", name, strings.Join(parts, ", "), users)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rate, "rate", "", "calls per second across the jobs: 50, 50/s, 3000/m, 1000/h (0: none)")
	f.IntVar(&burst, "burst", 1, "calls the rate allows at once")
	f.IntVar(&parallelism, "parallelism", 0, "calls in flight across the jobs (0: none)")
	f.Float64Var(&tpm, "tpm", 0, "tokens per minute across the jobs (0: none)")
	f.StringVar(&lease, "lease", "", "how long a dead job's slots stay taken (default 10s)")
	return cmd
}

// limitJSON is a limit as `limit get --json` and `limit ls --json` print it.
type limitJSON struct {
	Name           string         `json:"name"`
	Rate           float64        `json:"rate"`
	Burst          int            `json:"burst"`
	Parallelism    int            `json:"parallelism"`
	TPM            float64        `json:"tpm"`
	LeaseMS        int64          `json:"lease_ms"`
	InFlight       int            `json:"in_flight"`
	Waiting        int            `json:"waiting"`
	CallsPerSecond float64        `json:"calls_per_second"`
	HoldMS         int64          `json:"hold_ms"`
	Jobs           []limitJobJSON `json:"jobs"`
	UpdatedBy      string         `json:"updated_by,omitempty"`
	UpdatedAt      *time.Time     `json:"updated_at,omitempty"`
}

type limitJobJSON struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	Label    string    `json:"label,omitempty"`
	Weight   float64   `json:"weight"`
	InFlight int       `json:"in_flight"`
	Waiting  int       `json:"waiting"`
	Calls    int64     `json:"calls"`
	Alive    bool      `json:"alive"`
	Seen     time.Time `json:"seen"`
}

func toLimitJSON(i cluster.LimitInfo) limitJSON {
	j := limitJSON{
		Name: i.Name, Rate: i.Rate, Burst: i.Burst, Parallelism: i.Parallelism, TPM: i.TPM, LeaseMS: i.Lease.Milliseconds(),
		InFlight: i.InFlight, Waiting: i.Waiting, CallsPerSecond: i.CallsPerSecond, HoldMS: i.Hold.Milliseconds(), Jobs: []limitJobJSON{}, UpdatedBy: i.UpdatedBy,
	}
	if !i.UpdatedAt.IsZero() {
		j.UpdatedAt = &i.UpdatedAt
	}
	for _, x := range i.Jobs {
		j.Jobs = append(j.Jobs, limitJobJSON{ID: x.ID, Host: x.Host, Label: x.Label, Weight: x.Weight, InFlight: x.InFlight, Waiting: x.Waiting, Calls: x.Calls, Alive: x.Alive, Seen: x.Seen})
	}
	return j
}

func newLimitGetCmd(env *Env, connect limitConnect) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "get NAME [--json]",
		Short: "Show a shared limit: its knobs, its use now and the jobs that use it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := connect(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = l.Close() }() // the command's own answer came back; this drops the connection
			info, err := l.Get(cmd.Context(), args[0])
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			if asJSON {
				return printJSON(env.Stdout, toLimitJSON(info))
			}
			printLimit(env.Stdout, info)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for a script")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noneIfZero(v float64, show func(float64) string) string {
	if v <= 0 {
		return "none"
	}
	return show(v)
}

func printLimit(w io.Writer, i cluster.LimitInfo) {
	fmt.Fprintf(w, "limit %s\n", i.Name)
	fmt.Fprintf(w, "  rate          %s (burst %d)\n", engine.FormatRate(i.Rate), i.Burst)
	fmt.Fprintf(w, "  parallelism   %s\n", noneIfZero(float64(i.Parallelism), func(v float64) string { return strconv.Itoa(int(v)) }))
	fmt.Fprintf(w, "  tpm           %s\n", noneIfZero(i.TPM, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }))
	fmt.Fprintf(w, "  lease         %v\n", i.Lease)
	now := fmt.Sprintf("%d in flight, %d waiting for it, %.0f calls/s (last whole second)", i.InFlight, i.Waiting, i.CallsPerSecond)
	if i.Hold > 0 {
		now += fmt.Sprintf(", held by a Retry-After for %v more", i.Hold.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  now           %s\n", now)
	if i.UpdatedBy != "" {
		fmt.Fprintf(w, "  set by        %s at %s\n", i.UpdatedBy, i.UpdatedAt.Local().Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(w, "  jobs          %d using it now\n", i.AliveJobs())
	if len(i.Jobs) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    JOB\tLABEL\tWEIGHT\tIN FLIGHT\tWAITING\tCALLS\tSTATE")
	for _, j := range i.Jobs {
		state := "running"
		if !j.Alive {
			state = "silent since " + j.Seen.Local().Format("15:04:05")
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.ID, j.Label, formatWeight(j.Weight), j.InFlight, j.Waiting, human.Count(j.Calls), state)
	}
	_ = tw.Flush() // a table on the terminal: nobody to tell if it fails
}

func newLimitLsCmd(env *Env, connect limitConnect) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [--json]",
		Short: "List the shared limits: knobs, calls in flight, waiting and per second now, jobs",
		Long: `List the shared limits. IN FLIGHT counts the calls holding a slot now: at their
target. WAITING counts the jobs' calls waiting for the limit (refused by it, not
started), as of their last heartbeats (every second). CALLS/S counts the calls the
limit admitted in the last whole second.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := connect(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = l.Close() }() // the command's own answer came back; this drops the connection
			all, err := l.List(cmd.Context())
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			if asJSON {
				out := []limitJSON{}
				for _, i := range all {
					out = append(out, toLimitJSON(i))
				}
				return printJSON(env.Stdout, out)
			}
			if len(all) == 0 {
				fmt.Fprintln(env.Stdout, "no shared limits; make one with throttle limit set NAME --rate 50/s --redis URL")
				return nil
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRATE\tBURST\tPARALLELISM\tTPM\tIN FLIGHT\tWAITING\tCALLS/S\tJOBS")
			for _, i := range all {
				par := noneIfZero(float64(i.Parallelism), func(v float64) string { return strconv.Itoa(int(v)) })
				tpm := noneIfZero(i.TPM, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) })
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%.0f\t%d\n", i.Name, engine.FormatRate(i.Rate), i.Burst, par, tpm, i.InFlight, i.Waiting, i.CallsPerSecond, i.AliveJobs())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for a script")
	return cmd
}

func newLimitRmCmd(env *Env, connect limitConnect) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm NAME [--force]",
		Short: "Remove a shared limit (refused while jobs use it, unless --force)",
		Long: `Remove the named limit. While jobs use it, rm refuses: with --force it goes anyway,
and the calls of those jobs wait (a job never goes on without its limits) until the
limit is set again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := connect(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = l.Close() }() // the command's own answer came back; this drops the connection
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			err = l.Remove(ctx, args[0], limitBy(), force)
			if errors.Is(err, cluster.ErrLimitInUse) {
				return &exitError{code: ExitFailures, err: fmt.Errorf("%w; --force removes it anyway (their calls then wait until it is set again)", err)}
			}
			if err != nil {
				return &exitError{code: ExitFailures, err: err}
			}
			fmt.Fprintf(env.Stdout, "limit %s removed\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove it even while jobs use it")
	return cmd
}
