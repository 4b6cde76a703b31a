package materialize

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// maxTemplates bounds the query templates counted one by one; later
// ones are counted under template "other", so a workload of ever-new
// statement shapes cannot grow memory or label cardinality.
const maxTemplates = 1000

// templates counts reads per query template (pg_query fingerprint). The
// map is copied on the rare insert so that the per-read lookup takes no
// lock.
type templates struct {
	by    atomic.Pointer[map[uint64]*templateCounts]
	mu    sync.Mutex // serializes inserts
	other templateCounts
}

type templateCounts struct {
	query                  string // normalized text of the first statement seen
	hits, misses, bypassed atomic.Uint64
	reason                 atomic.Pointer[string] // the last bypass reason
}

// TemplateStats are one template's counters.
type TemplateStats struct {
	// Query is the template's text, constants replaced by $n (empty for
	// "other").
	Query                  string
	Hits, Misses, Bypassed uint64
	// Reason is the last reason a read of it went to the origin unfilled.
	Reason string
}

// counts returns fp's counters, made on its first read, whose statement
// sql is normalized then (once per template, off the hit path).
func (t *templates) counts(fp uint64, sql string) *templateCounts {
	if m := t.by.Load(); m != nil {
		if c := (*m)[fp]; c != nil {
			return c
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.by.Load()
	if old != nil {
		if c := (*old)[fp]; c != nil {
			return c
		}
		if len(*old) >= maxTemplates {
			return &t.other
		}
	}
	next := make(map[uint64]*templateCounts, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	c := &templateCounts{query: analyze.NormalizedText(sql)}
	next[fp] = c
	t.by.Store(&next)
	return c
}

func lenOf(m *map[uint64]*templateCounts) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func (t *templates) record(fp uint64, sql string, a *Answer) {
	c := t.counts(fp, sql)
	switch {
	case a.Entry != nil:
		c.hits.Add(1)
	case a.Ticket != nil:
		c.misses.Add(1)
	default:
		c.bypassed.Add(1)
		if r := a.Reason; r != "" {
			if p := c.reason.Load(); p == nil || *p != r {
				c.reason.Store(&r)
			}
		}
	}
}

// Templates returns the counters per template fingerprint (0 holds the
// templates beyond the first 1000).
func (m *Materializer) Templates() map[uint64]TemplateStats {
	t := &m.templates
	out := map[uint64]TemplateStats{}
	snap := func(c *templateCounts) TemplateStats {
		s := TemplateStats{Query: c.query, Hits: c.hits.Load(), Misses: c.misses.Load(), Bypassed: c.bypassed.Load()}
		if p := c.reason.Load(); p != nil {
			s.Reason = *p
		}
		return s
	}
	if m := t.by.Load(); m != nil {
		for fp, c := range *m {
			out[fp] = snap(c)
		}
	}
	if o := snap(&t.other); o != (TemplateStats{}) {
		out[0] = o
	}
	return out
}

// QueryStats is what `/queries` reports of one query template.
type QueryStats struct {
	// Template is the pg_query fingerprint in hex, as the
	// freshet_template_reads_total series label it ("other" past the
	// first 1000 templates).
	Template string `json:"template"`
	// Query is the template's text with constants replaced by $n.
	Query    string  `json:"query"`
	Hits     uint64  `json:"hits"`
	Misses   uint64  `json:"misses"`
	Bypassed uint64  `json:"bypassed"`
	HitRatio float64 `json:"hit_ratio"`
	// Reason is why its last read that went to the origin unfilled did:
	// the statement's verdict (not cacheable, and why) or the moment's
	// (stale watermark, pending fence, ...).
	Reason string `json:"last_bypass_reason,omitempty"`
}

// Queries lists the query templates read so far, the most read first:
// which are served from the cache and which go to the origin, and why.
func (m *Materializer) Queries() []QueryStats {
	out := []QueryStats{}
	for fp, s := range m.Templates() {
		q := QueryStats{Template: templateName(fp), Query: s.Query, Hits: s.Hits, Misses: s.Misses,
			Bypassed: s.Bypassed, Reason: s.Reason}
		if n := s.Hits + s.Misses + s.Bypassed; n > 0 {
			q.HitRatio = float64(s.Hits) / float64(n)
		}
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b QueryStats) int {
		if c := cmp.Compare(b.Hits+b.Misses+b.Bypassed, a.Hits+a.Misses+a.Bypassed); c != 0 {
			return c
		}
		return strings.Compare(a.Template, b.Template)
	})
	return out
}

func templateName(fp uint64) string {
	if fp == 0 {
		return "other"
	}
	return strconv.FormatUint(fp, 16)
}

// templateCollector exposes the per-template counters at scrape time.
type templateCollector struct {
	m    *Materializer
	desc *prometheus.Desc
}

func newTemplateCollector(m *Materializer) *templateCollector {
	return &templateCollector{m: m, desc: prometheus.NewDesc("freshet_template_reads_total",
		"Cacheable-candidate reads per query template (pg_query fingerprint; \"other\" past the first 1000) by result.",
		[]string{"template", "result"}, nil)}
}

func (c *templateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *templateCollector) Collect(ch chan<- prometheus.Metric) {
	for fp, s := range c.m.Templates() {
		name := templateName(fp)
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Hits), name, "hit")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Misses), name, "miss")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.Bypassed), name, "bypass")
	}
}
