// Package junit writes `vmm test` results as JUnit XML, the format GitHub,
// GitLab and Jenkins render: one testsuite per run, one testcase per case,
// the console's tail in the failure of a case that did not pass.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmmdev/vmm/suite/result"
)

// TestSuites is the document's root; the types are exported so tests (and
// callers) can read a report back with encoding/xml.
type TestSuites struct {
	XMLName  xml.Name    `xml:"testsuites"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Suites   []TestSuite `xml:"testsuite"`
}

// TestSuite is the run.
type TestSuite struct {
	Name       string     `xml:"name,attr"`
	Tests      int        `xml:"tests,attr"`
	Failures   int        `xml:"failures,attr"`
	Errors     int        `xml:"errors,attr"`
	Skipped    int        `xml:"skipped,attr"`
	Time       string     `xml:"time,attr"`
	Timestamp  string     `xml:"timestamp,attr,omitempty"`
	Properties []Property `xml:"properties>property,omitempty"`
	Cases      []TestCase `xml:"testcase"`
}

// Property is a name/value pair of the run.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// TestCase is one case.
type TestCase struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Time      string   `xml:"time,attr"`
	Failure   *Problem `xml:"failure,omitempty"`
	Error     *Problem `xml:"error,omitempty"`
	Skipped   *Problem `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Problem is a failure, error or skip: a one-line message and, for
// failures and errors, the console's tail.
type Problem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func secs(ms float64) string { return fmt.Sprintf("%.3f", ms/1000) }

// Build turns a run into the document.
func Build(r result.Run) TestSuites {
	ts := TestSuite{Name: r.Suite, Time: secs(r.WallMS),
		Properties: []Property{{"file", r.File}, {"shards", strings.Join(r.Shards, ",")}}}
	if r.StartedUnixNS != 0 {
		ts.Timestamp = time.Unix(0, r.StartedUnixNS).UTC().Format("2006-01-02T15:04:05")
	}
	if r.Interrupted {
		ts.Properties = append(ts.Properties, Property{"interrupted", "true"})
	}
	for _, c := range r.Cases {
		tc := TestCase{Name: c.Name, Classname: r.Suite + "." + c.Guest, Time: secs(c.WallMS)}
		p := &Problem{Message: c.Detail, Type: string(c.Verdict), Text: c.ConsoleTail}
		switch c.Verdict {
		case result.Fail:
			tc.Failure = p
			ts.Failures++
		case result.Error:
			tc.Error = p
			ts.Errors++
		case result.Interrupted, result.Skipped:
			tc.Skipped = &Problem{Message: c.Detail}
			ts.Skipped++
		}
		if c.Dir != "" {
			tc.SystemOut = fmt.Sprintf("case directory: %s\nvmm run %s", c.Dir, strings.Join(c.Args, " "))
		}
		ts.Cases = append(ts.Cases, tc)
	}
	ts.Tests = len(ts.Cases)
	return TestSuites{Name: r.Suite, Tests: ts.Tests, Failures: ts.Failures, Errors: ts.Errors, Skipped: ts.Skipped,
		Time: ts.Time, Suites: []TestSuite{ts}}
}

// Write writes r as JUnit XML to w.
func Write(w io.Writer, r result.Run) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(Build(r)); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	return nil
}

// WriteFile writes r as JUnit XML to path.
func WriteFile(path string, r result.Run) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write junit: %w", err)
	}
	if err := Write(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
