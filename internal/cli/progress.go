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
	// A spinner with the phase, or while the phase has items (layers),
	// a line per item instead.
	var spin *progressbar.ProgressBar
	spinner := func() *progressbar.ProgressBar {
		if spin == nil && a.streams.ErrIsTerminal {
			spin = progressbar.NewOptions64(-1,
				progressbar.OptionSetWriter(a.streams.Err),
				progressbar.OptionSpinnerType(14),
				progressbar.OptionSetDescription(what+": "+o.Phase),
				progressbar.OptionShowElapsedTimeOnFinish(),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionThrottle(100*time.Millisecond),
			)
		}
		return spin
	}
	stopSpinner := func() {
		if spin != nil {
			_ = spin.Finish()
			spin = nil
		}
	}
	defer stopSpinner()
	spinner()
	items := &itemsView{a: a}
	defer items.close()
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
		if !a.streams.ErrIsTerminal {
			continue
		}
		if len(o.Items) > 0 {
			stopSpinner()
			items.show(o)
			continue
		}
		if o.State != api.OpFailed && o.State != api.OpCancelled {
			items.finished() // the phase moved on: its items are done
		}
		items.close()
		desc := what + ": " + o.Phase
		if o.Total > 0 {
			desc += fmt.Sprintf(" (%d/%d)", o.Done, o.Total)
		}
		bar := spinner()
		bar.Describe(desc)
		_ = bar.Add(1)
	}
	return o, nil
}

// byteBar is a progress bar of bytes on stderr (total -1 when unknown),
// or nil when stderr is no terminal.
func (a *app) byteBar(total int64, what string) *progressbar.ProgressBar {
	if !a.streams.ErrIsTerminal {
		return nil
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(a.streams.Err),
		progressbar.OptionSetDescription(what), progressbar.OptionShowBytes(true),
		progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
}

// itemsView shows an operation's items as docker pull shows layers: a
// line for each one finished, a byte bar for the one in progress with
// the phase's total in its description.
type itemsView struct {
	a       *app
	items   []api.OpItem // as last shown
	printed int          // items whose line is out
	bar     *progressbar.ProgressBar
	barFor  string
}

// finished prints the lines of the items last shown that are not out yet,
// as done, once their phase has ended.
func (v *itemsView) finished() {
	for i := v.printed; i < len(v.items); i++ {
		v.items[i].Done = v.items[i].Total
	}
	v.show(api.Operation{Items: v.items})
	v.items, v.printed = nil, 0
}

func (v *itemsView) show(o api.Operation) {
	v.items = o.Items
	for v.printed < len(o.Items) && o.Items[v.printed].Done >= o.Items[v.printed].Total {
		it := o.Items[v.printed]
		if v.barFor == it.Name {
			v.close()
		}
		fmt.Fprintf(v.a.streams.Err, "%s: %s done\n", shortID(it.Name), bytesStr(it.Total))
		v.printed++
	}
	if v.printed == len(o.Items) {
		return
	}
	it := o.Items[v.printed]
	if v.barFor != it.Name {
		v.close()
		v.bar, v.barFor = v.a.byteBar(it.Total, ""), it.Name
	}
	desc := fmt.Sprintf("%s (layer %d/%d", shortID(it.Name), v.printed+1, len(o.Items))
	if o.Total > 0 {
		desc += fmt.Sprintf(", %s of %s in all", bytesStr(o.Done), bytesStr(o.Total))
	}
	v.bar.Describe(desc + ")")
	_ = v.bar.Set64(it.Done)
}

// close takes the bar in progress off the terminal.
func (v *itemsView) close() {
	if v.bar != nil {
		_ = v.bar.Finish()
	}
	v.bar, v.barFor = nil, ""
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
