package gate

import (
	"bytes"
	"io"
	"testing"
)

// FuzzReports feeds check everything a leaks.json can hold: it must
// judge, write every format, and round-trip a baseline, or refuse the
// file with an error, never panic.
func FuzzReports(f *testing.F) {
	f.Add([]byte(reportA))
	f.Add([]byte(reportB))
	f.Add([]byte(`{"version":1,"program":"x","leaks":[{"kind":"direct","bytes":1,"objects":1,"frames":[]}]}`))
	f.Add([]byte(`{"version":1,"program":"x","leaks":null}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseReport(data, "fuzz.leaks.json")
		if err != nil {
			return
		}
		reports := []*Report{r}
		zero := uint64(0)
		v := &Verdict{Reports: reports, Violations: Check(reports, Limits{MaxLeaked: &zero, MaxLeakPerSite: &zero, MaxPeak: &zero, MaxAllocations: &zero}), SourceRoot: "/"}
		for _, format := range Formats {
			if err := v.Write(io.Discard, format); err != nil {
				t.Fatalf("%s: %v", format, err)
			}
		}
		var b bytes.Buffer
		if err := NewBaseline(reports).Write(&b); err != nil {
			t.Fatal(err)
		}
		base, err := ReadBaseline(&b, "fuzz")
		if err != nil {
			t.Fatalf("a baseline we wrote does not read back: %v\n%s", err, b.String())
		}
		if vs := base.Compare(reports, 0); len(vs) != 0 {
			t.Fatalf("a run breaks its own baseline: %+v", vs)
		}
	})
}

// FuzzBaseline: a baseline file is input too.
func FuzzBaseline(f *testing.F) {
	f.Add([]byte(`{"version":1,"programs":{"demo":{"peak_bytes":1,"sites":{"a@b.c":{"bytes":1,"objects":1}}}}}`))
	f.Add([]byte(`{"version":1,"programs":{"demo":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBaseline(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		r, err := ParseReport([]byte(reportB), "b.leaks.json")
		if err != nil {
			t.Fatal(err)
		}
		b.Compare([]*Report{r}, 10)
	})
}
