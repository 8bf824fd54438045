package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

const docPath = "../../docs/metrics.md"

// docMetric is one row of the table in docs/metrics.md.
type docMetric struct {
	typ    string
	labels []string
}

var (
	// | `fastpath_x_total` | counter | `interface`, `reason` | meaning |
	docRowRE   = regexp.MustCompile("^\\| `(fastpath_[a-z0-9_]+)` \\| ([a-z]+) \\| ([^|]*) \\|")
	docLabelRE = regexp.MustCompile("`([a-z_]+)`")
	docNameRE  = regexp.MustCompile(`\bfastpath_[a-z0-9_]*[a-z0-9]`)
)

func readDocTable(t *testing.T) (map[string]docMetric, string) {
	t.Helper()
	data, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docMetric{}
	for _, line := range strings.Split(string(data), "\n") {
		m := docRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("%s: %s listed twice", docPath, m[1])
		}
		var labels []string
		for _, l := range docLabelRE.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		rows[m[1]] = docMetric{typ: m[2], labels: labels}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no metric table found", docPath)
	}
	return rows, string(data)
}

// TestDocsMatchMetrics keeps docs/metrics.md and the collector in step:
// every fastpath_ metric served is in the doc's table with its type and
// labels, and every fastpath_ name the doc mentions anywhere (table,
// queries, alerts) is served.
func TestDocsMatchMetrics(t *testing.T) {
	rows, doc := readDocTable(t)

	reg, err := newRegistry(t.Context(), newGuardFake(), "v0.9.0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "fastpath_") {
			continue
		}
		served[name] = true
		row, ok := rows[name]
		if !ok {
			t.Errorf("%s is served but not in the table of %s", name, docPath)
			continue
		}
		if typ := typeName(mf.GetType()); row.typ != typ {
			t.Errorf("%s: %s says %s, served as %s", name, docPath, row.typ, typ)
		}
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		slices.Sort(labels)
		if !slices.Equal(row.labels, labels) {
			t.Errorf("%s: %s lists labels %q, served with %q", name, docPath, row.labels, labels)
		}
	}
	if len(served) != len(newCollector(t.Context(), newFake(), "", time.Second).families())+
		len(newGuardCollector(t.Context(), newGuardFake(), time.Second).families()) {
		t.Errorf("the fake source does not make every family appear; served %d", len(served))
	}
	for _, name := range docNameRE.FindAllString(doc, -1) {
		if !served[name] {
			t.Errorf("%s mentions %s, which is not served", docPath, name)
		}
	}
}

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	default:
		return strings.ToLower(t.String())
	}
}
