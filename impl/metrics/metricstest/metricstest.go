// Package metricstest scrapes a metrics listener (package metrics) in
// tests and reads the series of the scrape.
package metricstest

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one parsed answer of /metrics, and its text.
type Scrape struct {
	Text     string
	Families map[string]*dto.MetricFamily
}

// Get GETs /metrics from the metrics listener at addr (host:port) and
// parses it; the answer must be the Prometheus text format.
func Get(t testing.TB, addr string) Scrape {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	return Scrape{Text: string(body), Families: fams}
}

// Value sums the samples of a family whose labels include want (a
// histogram's or summary's count; a counter's, gauge's or untyped value).
// A family or series absent from the scrape is 0.
func (s Scrape) Value(name string, want map[string]string) float64 {
	f, ok := s.Families[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range f.Metric {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		case m.Summary != nil:
			sum += float64(m.Summary.GetSampleCount())
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
			return false
		}
	}
	return true
}

// LabelValues lists the values a family's series have for a label.
func (s Scrape) LabelValues(name, label string) []string {
	var out []string
	if f, ok := s.Families[name]; ok {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == label && !slices.Contains(out, l.GetValue()) {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}
