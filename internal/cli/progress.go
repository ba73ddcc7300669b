package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/client"
)

// waitOp polls an operation until it finishes, showing its phase on stderr
// when stderr is a terminal. Ctrl-C cancels the operation (which rolls it
// back) rather than abandoning it.
func (a *app) waitOp(ctx context.Context, c *client.Client, o api.Operation, what string) (api.Operation, error) {
	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	var bar *progressbar.ProgressBar
	if a.streams.ErrIsTerminal {
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(a.streams.Err),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetDescription(what+": "+o.Phase),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
		defer func() { _ = bar.Finish() }()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for o.State == api.OpRunning {
		select {
		case <-sigCtx.Done():
			if ctx.Err() != nil {
				return o, ctx.Err()
			}
			fmt.Fprintf(a.streams.Err, "\nbanger: interrupted; cancelling %s (%s)\n", what, o.ID)
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			final, err := c.OpCancel(cctx, o.ID)
			if err != nil {
				return o, fmt.Errorf("cancelling %s: %w", o.ID, err)
			}
			return final, nil
		case <-tick.C:
		}
		next, err := c.OpStatus(ctx, o.ID)
		if err != nil {
			return o, err
		}
		o = next
		if bar != nil {
			desc := what + ": " + o.Phase
			if o.Total > 0 {
				desc += fmt.Sprintf(" (%d/%d)", o.Done, o.Total)
			}
			bar.Describe(desc)
			_ = bar.Add(1)
		}
	}
	return o, nil
}

// opErr turns a finished operation that did not succeed into an error.
func opErr(o api.Operation) error {
	switch o.State {
	case api.OpSucceeded:
		return nil
	case api.OpCancelled:
		return errors.New(o.Kind + " " + o.Target + " cancelled; everything it reserved was rolled back")
	default:
		return errors.New(o.Error)
	}
}
