// Package reportstest is a fake report source for the tests of what serves reports (the API,
// the page, the CLI): it answers each report as the test says, and keeps what it was asked.
package reportstest

import (
	"context"
	"slices"
	"sync"

	"github.com/zenklav/zenklav/reports"
)

// Source is a reports.Source whose answers come from Answer.
type Source struct {
	// Answer returns the rows of a report of kind (a slice of its row type, or nil for
	// none) or an error.
	Answer func(kind string, f reports.Filter) (any, error)

	mu    sync.Mutex
	asked []reports.Filter
}

var _ reports.Source = (*Source)(nil)

// Asked returns the filters the source was asked with, in order.
func (s *Source) Asked() []reports.Filter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked)
}

func answer[T any](s *Source, kind string, f reports.Filter) ([]T, error) {
	s.mu.Lock()
	s.asked = append(s.asked, f)
	s.mu.Unlock()
	rows, err := s.Answer(kind, f)
	if err != nil || rows == nil {
		return nil, err
	}
	return rows.([]T), nil
}

// Trends answers the trends report.
func (s *Source) Trends(_ context.Context, f reports.Filter) ([]reports.TrendRow, error) {
	return answer[reports.TrendRow](s, reports.KindTrends, f)
}

// ResolutionCohorts answers the resolution cohorts report.
func (s *Source) ResolutionCohorts(_ context.Context, f reports.Filter) ([]reports.ResolutionCohortRow, error) {
	return answer[reports.ResolutionCohortRow](s, reports.KindResolutionCohorts, f)
}

// RepeatCohorts answers the repeat cohorts report.
func (s *Source) RepeatCohorts(_ context.Context, f reports.Filter) ([]reports.RepeatCohortRow, error) {
	return answer[reports.RepeatCohortRow](s, reports.KindRepeatCohorts, f)
}

// Segments answers the segments report.
func (s *Source) Segments(_ context.Context, f reports.Filter) ([]reports.SegmentRow, error) {
	return answer[reports.SegmentRow](s, reports.KindSegments, f)
}
