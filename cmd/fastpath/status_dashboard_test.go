package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

func TestStatusShowsDatapathAndDashboard(t *testing.T) {
	st := newTestStatus()
	st.Datapath = &api.DatapathStatus{RouteGeneration: 12, RulesetGeneration: 3, Watchdog: api.WatchdogArmed}
	st.Dashboard = &api.DashboardStatus{URL: "http://0.0.0.0:9470/", Warning: "the dashboard listens on 0.0.0.0:9470, reachable from other hosts"}
	var b bytes.Buffer
	if err := writeStatus(&b, &st, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"datapath: route generation 12, ruleset generation 3, watchdog armed\n",
		"dashboard: http://0.0.0.0:9470/ (read-only)\n",
		"WARNING: the dashboard listens on 0.0.0.0:9470, reachable from other hosts\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	st = newTestStatus()
	b.Reset()
	writeStatus(&b, &st, time.Now())
	if strings.Contains(b.String(), "dashboard") || strings.Contains(b.String(), "WARNING") {
		t.Errorf("status without a dashboard mentions one:\n%s", b.String())
	}
}
