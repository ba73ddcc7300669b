package agent

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest"
)

// stepAbove is the offset from which the agent steps the clock rather
// than slewing it: the kernel slews at most 0.5 ms per second, so larger
// errors (a fresh boot reads whole seconds from the RTC, a restored
// snapshot is behind by the time it was saved) would take minutes.
const stepAbove = 50 * time.Millisecond

// adjustClock moves the guest's wall clock forward by off (backward when
// negative) and says how: guest.ClockStepped or guest.ClockSlewed.
func adjustClock(off time.Duration) (string, error) {
	if off >= stepAbove || off <= -stepAbove {
		ts := unix.NsecToTimespec(time.Now().Add(off).UnixNano())
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return "", fmt.Errorf("setting the clock: %w", err)
		}
		return guest.ClockStepped, nil
	}
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: off.Microseconds()}
	if _, err := unix.Adjtimex(&tx); err != nil {
		return "", fmt.Errorf("slewing the clock: %w", err)
	}
	return guest.ClockSlewed, nil
}
