package gate

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// Formats check writes.
const (
	FormatText   = "text"
	FormatGitHub = "github"
	FormatSARIF  = "sarif"
	FormatCSV    = "csv"
)

// Formats lists the formats, for messages.
var Formats = []string{FormatText, FormatGitHub, FormatSARIF, FormatCSV}

// Verdict is what check found: the reports it read and the limits they
// broke.
type Verdict struct {
	Reports    []*Report
	Violations []Violation
	// SourceRoot makes SARIF and GitHub file paths relative (CI shows a
	// finding on a pull request's line only for a path in the repository).
	SourceRoot string
}

// Write writes the verdict in format.
func (v *Verdict) Write(w io.Writer, format string) error {
	switch format {
	case FormatText, "":
		return v.writeText(w)
	case FormatGitHub:
		return v.writeGitHub(w)
	case FormatSARIF:
		return v.writeSARIF(w)
	case FormatCSV:
		return v.writeCSV(w)
	}
	return fmt.Errorf("unknown format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

func who(program string, pid uint32) string {
	if pid == 0 {
		return program
	}
	return fmt.Sprintf("%s (pid %d)", program, pid)
}

func limitText(v Violation) string {
	if v.Rule == "new leak site" {
		return ""
	}
	if v.Rule == "--max-growth" {
		return fmt.Sprintf(" (baseline %d%s)", v.Limit, unitText(v.Unit))
	}
	return fmt.Sprintf(" (limit %d%s)", v.Limit, unitText(v.Unit))
}

func unitText(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

// where is a frame as the text report writes it: FUNC FILE:LINE.
func where(f Frame) string {
	fn := f.Function
	if fn == "" {
		fn = f.Address
	}
	switch {
	case f.File != "" && f.Line > 0:
		return fmt.Sprintf("%s %s:%d", fn, f.File, f.Line)
	case f.Module != "":
		return fmt.Sprintf("%s (%s)", fn, f.Module)
	}
	return fn
}

func (v *Verdict) writeText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, x := range v.Violations {
		fmt.Fprintf(bw, "FAIL %s: %s: %s%s\n", who(x.Program, x.Pid), x.Rule, x.Message, limitText(x))
		for _, s := range x.Sites {
			f, _ := UserFrame(s.Frames)
			fmt.Fprintf(bw, "    %d byte(s) in %d object(s) (%s) at %s\n", s.Bytes, s.Objects, strings.Join(s.Kinds, ", "), where(f))
		}
	}
	if n := len(v.Violations); n > 0 {
		fmt.Fprintf(bw, "memscope check: %d limit(s) broken in %d report(s)\n", n, len(v.Reports))
	} else {
		fmt.Fprintf(bw, "memscope check: %d report(s) within limits\n", len(v.Reports))
	}
	return bw.Flush()
}

// relPath makes an absolute path under the source root relative to it.
func (v *Verdict) relPath(p string) string {
	if v.SourceRoot == "" || !filepath.IsAbs(p) {
		return p
	}
	if rel, err := filepath.Rel(v.SourceRoot, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// GitHub workflow commands: ::error file=F,line=L,title=T::MESSAGE, with
// the escapes of the runner's toolkit.
func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

func (v *Verdict) writeGitHub(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, x := range v.Violations {
		title := ghProp("memscope: " + x.Rule)
		msg := fmt.Sprintf("%s: %s%s", who(x.Program, x.Pid), x.Message, limitText(x))
		if len(x.Sites) == 0 {
			fmt.Fprintf(bw, "::error title=%s::%s\n", title, ghData(msg))
			continue
		}
		for _, s := range x.Sites {
			f, ok := UserFrame(s.Frames)
			siteMsg := fmt.Sprintf("%s; this site: %d byte(s) in %d object(s) (%s) allocated at %s", msg, s.Bytes, s.Objects, strings.Join(s.Kinds, ", "), where(f))
			if ok {
				fmt.Fprintf(bw, "::error file=%s,line=%d,title=%s::%s\n", ghProp(v.relPath(f.File)), f.Line, title, ghData(siteMsg))
			} else {
				fmt.Fprintf(bw, "::error title=%s::%s\n", title, ghData(siteMsg))
			}
		}
	}
	return bw.Flush()
}

// SARIF 2.1.0, the subset code scanning reads.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name  string      `json:"name"`
	Rules []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
	FullDescription  sarifMessage `json:"fullDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	Level               string            `json:"level"`
	Message             sarifMessage      `json:"message"`
	Locations           []sarifLocation   `json:"locations,omitempty"`
	PartialFingerprints map[string]string `json:"partialFingerprints,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// writeSARIF writes one result per leak site (level error when the site
// broke a limit, warning otherwise), located at its first frame in the
// user's own code, and one per broken limit that names no site (peak,
// allocations), without a location.
func (v *Verdict) writeSARIF(w io.Writer) error {
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "memscope", Rules: []sarifRule{
		{ID: "memscope/leak", ShortDescription: sarifMessage{"Memory leak"},
			FullDescription: sarifMessage{"Heap memory still allocated at exit that no pointer in the program reaches (LeakSanitizer's direct and indirect leaks)."}},
		{ID: "memscope/limit", ShortDescription: sarifMessage{"Memory limit exceeded"},
			FullDescription: sarifMessage{"A limit given to memscope-analyze check (peak heap, allocations, growth over a baseline) was exceeded."}},
	}}}, Results: []sarifResult{}}
	broke := map[*Site]string{}
	for _, x := range v.Violations {
		for _, s := range x.Sites {
			if broke[s] == "" {
				broke[s] = fmt.Sprintf("%s: %s%s", x.Rule, x.Message, limitText(x))
			}
		}
	}
	for _, s := range LeakSites(v.Reports) {
		// LeakSites builds new sites: match the violations' by key.
		level, why := "warning", ""
		for vs, msg := range broke {
			if vs.Program == s.Program && vs.Key == s.Key {
				level, why = "error", " "+msg+"."
			}
		}
		f, ok := UserFrame(s.Frames)
		res := sarifResult{RuleID: "memscope/leak", Level: level,
			Message: sarifMessage{fmt.Sprintf("%s leaked %d byte(s) in %d object(s) (%s) allocated at %s.%s",
				s.Program, s.Bytes, s.Objects, strings.Join(s.Kinds, ", "), where(f), why)},
			PartialFingerprints: map[string]string{"memscopeSite/v1": fingerprint(s.Program + "\x00" + s.Key)}}
		if ok {
			res.Locations = []sarifLocation{{sarifPhysical{sarifArtifact{v.relPath(f.File)}, sarifRegion{f.Line}}}}
		}
		run.Results = append(run.Results, res)
	}
	for _, x := range v.Violations {
		if len(x.Sites) == 0 {
			run.Results = append(run.Results, sarifResult{RuleID: "memscope/limit", Level: "error",
				Message: sarifMessage{fmt.Sprintf("%s: %s: %s%s", who(x.Program, x.Pid), x.Rule, x.Message, limitText(x))}})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}

func fingerprint(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// writeCSV writes the per-site table: one row per leak site.
func (v *Verdict) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"program", "pids", "kinds", "bytes", "objects", "function", "file", "line", "site"})
	for _, s := range LeakSites(v.Reports) {
		f, _ := UserFrame(s.Frames)
		pids := make([]string, len(s.Pids))
		for i, p := range s.Pids {
			pids[i] = strconv.FormatUint(uint64(p), 10)
		}
		line := ""
		if f.Line > 0 {
			line = strconv.Itoa(f.Line)
		}
		cw.Write([]string{s.Program, strings.Join(pids, " "), strings.Join(s.Kinds, " "),
			strconv.FormatUint(s.Bytes, 10), strconv.FormatUint(s.Objects, 10), f.Function, f.File, line, s.Key})
	}
	cw.Flush()
	return cw.Error()
}
