package daemon

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// revalidation keeps flows.revalidate in force only while the ruleset
// holds state that can change a verdict without an event
// (netwatch.EventlessRuleset: sets whose elements time out or that the
// packet path updates, time-of-day rules, iptables-legacy tables). Then
// every offloaded flow sends one packet through the ruleset per interval,
// which costs the kernel a packet per flow per interval (a million pps at
// a million flows and 1 s); without such state every change comes with an
// event, and no packet needs to.
type revalidation struct {
	set  func(time.Duration) error // the datapath's interval (0: off)
	read func() ([]string, error)  // what in the ruleset changes without events
	log  *slog.Logger

	mu     sync.Mutex    // configure and refresh are the main loop's; status is the API's
	every  time.Duration // configured
	always bool
	why    []string      // why it runs, as last read
	active time.Duration // what the datapath has
	known  bool          // active was written
}

// configure takes flows.revalidate and flows.revalidate_always and applies
// them with what the ruleset holds now.
func (v *revalidation) configure(every time.Duration, always bool) error {
	v.mu.Lock()
	v.every, v.always = every, always
	v.mu.Unlock()
	return v.refresh()
}

// refresh reads the ruleset again (after a ruleset event, and on the
// resync tick for iptables-legacy, which sends none) and turns
// revalidation on or off. A ruleset that cannot be read counts as one that
// needs it.
func (v *revalidation) refresh() error {
	why, err := v.read()
	if err != nil {
		why = []string{"ruleset unreadable: " + err.Error()}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.always {
		why = append([]string{"flows.revalidate_always"}, why...)
	}
	want := time.Duration(0)
	if len(why) > 0 {
		want = v.every
	}
	if !slices.Equal(why, v.why) {
		if len(why) > 0 {
			v.log.Info("flows revalidated: the ruleset holds state that changes without events", "every", want, "why", strings.Join(why, "; "))
		} else if v.known {
			v.log.Info("flows not revalidated: every ruleset change comes with an event")
		}
		v.why = why
	}
	if v.known && want == v.active {
		return nil
	}
	if err := v.set(want); err != nil {
		return err
	}
	v.active, v.known = want, true
	return nil
}

// status is the interval in force (0: off) and why.
func (v *revalidation) status() (time.Duration, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.active, slices.Clone(v.why)
}
