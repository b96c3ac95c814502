package reports_test

import (
	"fmt"
	"os"

	"github.com/zenklav/zenklav/reports"
)

// ExampleWriteCSV shows the CSV of a report: the JSON names as its header.
func ExampleWriteCSV() {
	_ = reports.WriteCSV(os.Stdout, []reports.RepeatCohortRow{{Cohort: "2026-11-23", Customers: 40, Offset: 1, Returned: 6, Share: 0.15}})
	fmt.Println("-")
	// Output:
	// cohort,customers,offset,returned,share
	// 2026-11-23,40,1,6,0.15
	// -
}
