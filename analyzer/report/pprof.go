package report

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"

	"github.com/google/pprof/profile"
	"github.com/klauspost/compress/gzip"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
)

// Inuse selects what the inuse_* sample values of a profile mean.
type Inuse int

const (
	InuseAtExit Inuse = iota // live when the process ended (memscope.PROG.PID.pb.gz)
	InuseAtPeak              // live at the moment of peak heap (memscope.PROG.PID.peak.pb.gz)
)

// ProfileOptions are the parts of a profile the process state lacks.
type ProfileOptions struct {
	TimeNanos int64 // wall-clock time of the process end, 0 if unknown
}

// Profile builds the pprof heap profile of p: sample types alloc_objects,
// alloc_space, inuse_objects, inuse_space (default inuse_space), one sample
// per (stack, thread) site with the thread's name as label "thread";
// every location symbolized (inlined frames as extra lines, innermost
// first), mappings with file, build ID and the executable segment's
// address range and file offset.
func Profile(p *engine.Process, syms *Symbols, inuse Inuse, opts ProfileOptions) *profile.Profile {
	return newPprofBuilder(syms, p).profile(inuse, opts)
}

// Profiles builds both profiles of an ended process, the one at exit and
// the one at peak. They have the same sites, so they share their
// locations, functions and mappings (built once; encode them one at a
// time: the encoder numbers them in place).
func Profiles(p *engine.Process, syms *Symbols, opts ProfileOptions) (atExit, atPeak *profile.Profile) {
	b := newPprofBuilder(syms, p)
	return b.profile(InuseAtExit, opts), b.profile(InuseAtPeak, opts)
}

func (b *pprofBuilder) profile(inuse Inuse, opts ProfileOptions) *profile.Profile {
	p := b.p
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "alloc_objects", Unit: "count"},
			{Type: "alloc_space", Unit: "bytes"},
			{Type: "inuse_objects", Unit: "count"},
			{Type: "inuse_space", Unit: "bytes"},
		},
		DefaultSampleType: "inuse_space",
		PeriodType:        &profile.ValueType{Type: "space", Unit: "bytes"},
		Period:            1,
		TimeNanos:         opts.TimeNanos,
	}
	if p.EndTS > p.StartTS {
		prof.DurationNanos = int64(p.EndTS - p.StartTS)
	}
	switch inuse {
	case InuseAtExit:
		prof.Comments = []string{"memscope: inuse = live at process exit"}
	case InuseAtPeak:
		prof.Comments = []string{fmt.Sprintf("memscope: inuse = live at peak heap (%d bytes, +%s)", p.Totals.PeakBytes, relTime(p, p.Totals.PeakTS))}
	}

	// The label maps are shared by the samples of one thread (and kind):
	// the encoder only reads them.
	type labelKey struct {
		tid  uint32
		kind string
	}
	labels := map[labelKey]map[string][]string{}
	numLabels := map[uint32]map[string][]int64{}
	for i := range p.Sites {
		s := &p.Sites[i]
		loc := b.siteStack(i)
		sample := func(kind string, values ...uint64) {
			lk := labelKey{s.Tid, kind}
			label := labels[lk]
			if label == nil {
				label = map[string][]string{"thread": {threadName(p, s.Tid)}}
				if kind != "" {
					label["leak"] = []string{kind}
				}
				labels[lk] = label
			}
			numLabel := numLabels[s.Tid]
			if numLabel == nil {
				numLabel = map[string][]int64{"tid": {int64(s.Tid)}}
				numLabels[s.Tid] = numLabel
			}
			prof.Sample = append(prof.Sample, &profile.Sample{
				Location: loc,
				Label:    label,
				NumLabel: numLabel,
				Value:    []int64{int64(values[0]), int64(values[1]), int64(values[2]), int64(values[3])},
			})
		}
		if inuse == InuseAtPeak {
			sample("", s.Allocs, s.AllocBytes, s.PeakObjects, s.PeakBytes)
			continue
		}
		// At exit the live blocks of a site are split by the leak check's
		// verdict, one sample per kind labelled leak=KIND (-tagfocus
		// leak=direct); the allocation counts stay on one sample without
		// the label, so that every total adds up once.
		if s.LiveObjects == 0 {
			sample("", s.Allocs, s.AllocBytes, 0, 0)
			continue
		}
		first := true
		for k, c := range s.ByKind {
			if c.Objects == 0 {
				continue
			}
			var allocs, allocBytes uint64
			if first {
				allocs, allocBytes, first = s.Allocs, s.AllocBytes, false
			}
			sample(reach.Kind(k).String(), allocs, allocBytes, c.Objects, c.Bytes)
		}
	}
	prof.Location, prof.Function, prof.Mapping = b.locationList, b.functionList, b.mappingList
	return prof
}

// WriteProfile writes p's profile, gzipped protobuf, to w.
func WriteProfile(w io.Writer, p *engine.Process, syms *Symbols, inuse Inuse, opts ProfileOptions) error {
	var pw ProfileWriter
	if err := pw.Write(w, Profile(p, syms, inuse, opts)); err != nil {
		return fmt.Errorf("pid %d: %w", p.Pid, err)
	}
	return nil
}

// ProfileWriter writes profiles as gzipped protobuf, reusing its encoder,
// compressors and buffers: a new compressor clears about a megabyte, and
// a build's reports write two profiles per process. The two profiles of
// a process (Profiles), written one after the other, share their
// encoded tables (pprofenc.go).
type ProfileWriter struct {
	enc   profileEncoder
	raw   bytes.Buffer // the pprof package's encoding (!encodable)
	fast  *gzip.Writer // gzip.BestSpeed, for profiles of smallProfile bytes or more
	small *gzip.Writer // gzip.HuffmanOnly, for smaller ones
}

// smallProfile is the raw size under which a profile is only Huffman
// coded. gzip's fastest level matches strings through a 128 KiB hash
// table whose pages a fresh analyzer first touches there: 70 page faults,
// about 0.8 ms of a `run /bin/true` for a 2 KB profile, which Huffman
// coding alone makes 15% larger. From a few KB on, the matches pay.
const smallProfile = 16 << 10

// Write checks prof and writes it to w.
func (pw *ProfileWriter) Write(w io.Writer, prof *profile.Profile) error {
	if err := prof.CheckValid(); err != nil {
		return fmt.Errorf("pprof profile: %w", err)
	}
	var raw []byte
	if encodable(prof) {
		raw = pw.enc.encode(prof)
	} else {
		pw.raw.Reset()
		if err := prof.WriteUncompressed(&pw.raw); err != nil {
			return fmt.Errorf("pprof profile: %w", err)
		}
		raw = pw.raw.Bytes()
	}
	// gzip's fastest level: the profile is written for every process that
	// leaked, and pprof reads any level. A cc1's profile (327 KB raw)
	// came to 101 KB instead of 90 at the default level, compressed in
	// 2.6 ms instead of 9.5 (the standard library's deflate); klauspost's
	// at this level takes 2.6 ms where the standard library's took 4.1
	// (another host, a third slower).
	zw, level := &pw.fast, gzip.BestSpeed
	if len(raw) < smallProfile {
		zw, level = &pw.small, gzip.HuffmanOnly
	}
	if *zw == nil {
		var err error
		if *zw, err = gzip.NewWriterLevel(w, level); err != nil {
			return err
		}
	} else {
		(*zw).Reset(w)
	}
	if _, err := (*zw).Write(raw); err != nil {
		return fmt.Errorf("pprof profile: %w", err)
	}
	return (*zw).Close()
}

func threadName(p *engine.Process, tid uint32) string {
	if n := p.Threads[tid]; n != "" {
		return n
	}
	return "tid " + strconv.FormatUint(uint64(tid), 10)
}

type mappingKey struct {
	m   *engine.Module
	seg int
}

type funcKey struct{ name, file string }

type locKey struct {
	pc uint64
	m  *engine.Module
}

type pprofBuilder struct {
	syms      *Symbols
	p         *engine.Process
	mappings  map[mappingKey]*profile.Mapping
	functions map[funcKey]*profile.Function
	locations map[locKey]*profile.Location
	noStack   *profile.Location
	// The profile's tables, in ID order.
	mappingList  []*profile.Mapping
	functionList []*profile.Function
	locationList []*profile.Location
	// siteLocs holds each site's stack once built (Profiles: twice used).
	siteLocs [][]*profile.Location
	// byPC is each PC's location (nil: one of memscope's own frames),
	// kept when no module of the process was unloaded, so that a PC
	// means the same whatever the stack's time (otherwise byPC is nil
	// and every PC is resolved at its stack's time). Deep stacks repeat
	// their outer frames, and resolving each occurrence again (the
	// module search, the symbol cache's key) was most of the time of a
	// profile whose symbols were known (python dicts: 0.2 s).
	byPC map[uint64]*profile.Location
}

func newPprofBuilder(syms *Symbols, p *engine.Process) *pprofBuilder {
	b := &pprofBuilder{syms: syms, p: p,
		mappings: map[mappingKey]*profile.Mapping{}, functions: map[funcKey]*profile.Function{}, locations: map[locKey]*profile.Location{},
		siteLocs: make([][]*profile.Location, len(p.Sites))}
	for _, m := range p.Modules {
		if m.UnloadTS != 0 {
			return b
		}
	}
	b.byPC = map[uint64]*profile.Location{}
	return b
}

// siteStack returns the locations of site i's stack.
func (b *pprofBuilder) siteStack(i int) []*profile.Location {
	if b.siteLocs[i] == nil {
		s := &b.p.Sites[i]
		b.siteLocs[i] = b.stack(s.StackID, s.FirstTS)
	}
	return b.siteLocs[i]
}

// stack returns the locations of a stack's PCs, innermost first, without
// memscope's own frames.
func (b *pprofBuilder) stack(stackID, ts uint64) []*profile.Location {
	pcs := b.p.Stacks[stackID]
	locs := make([]*profile.Location, 0, len(pcs))
	for _, pc := range pcs {
		l, known := b.byPC[pc]
		if !known {
			if info := b.syms.resolve(b.p, pc, ts); info.module == nil || !isSelf(info.path) {
				l = b.location(info)
			}
			if b.byPC != nil {
				b.byPC[pc] = l
			}
		}
		if l != nil {
			locs = append(locs, l)
		}
	}
	if len(locs) == 0 {
		return []*profile.Location{b.noStackLocation()}
	}
	return locs
}

// noStackLocation stands for allocations recorded without a usable stack.
func (b *pprofBuilder) noStackLocation() *profile.Location {
	if b.noStack == nil {
		f := b.function("[no stack]", "")
		b.noStack = &profile.Location{ID: uint64(len(b.locationList) + 1), Line: []profile.Line{{Function: f}}}
		b.locationList = append(b.locationList, b.noStack)
	}
	return b.noStack
}

func (b *pprofBuilder) location(info pcInfo) *profile.Location {
	k := locKey{info.pc, info.module}
	if l := b.locations[k]; l != nil {
		return l
	}
	l := &profile.Location{ID: uint64(len(b.locationList) + 1), Address: info.pc}
	if info.module != nil {
		l.Mapping = b.mapping(info)
	}
	known := false
	for _, f := range info.frames {
		if f.Function == "" {
			continue
		}
		known = true
		l.Line = append(l.Line, profile.Line{Function: b.function(f.Function, f.File), Line: int64(f.Line)})
	}
	if !known {
		// Name the frame by module+offset so that -top shows where it is;
		// the mapping keeps what pprof needs to re-symbolize from the file.
		name := fmt.Sprintf("%#x", info.pc)
		if info.module != nil {
			name = fmt.Sprintf("%s+%#x", info.path, info.pc-info.module.Bias)
			l.Mapping.HasFunctions = false
		}
		l.Line = []profile.Line{{Function: b.function(name, "")}}
	}
	b.locations[k] = l
	b.locationList = append(b.locationList, l)
	return l
}

func (b *pprofBuilder) function(name, file string) *profile.Function {
	k := funcKey{name, file}
	if f := b.functions[k]; f != nil {
		return f
	}
	f := &profile.Function{ID: uint64(len(b.functionList) + 1), Name: name, SystemName: name, Filename: file}
	b.functions[k] = f
	b.functionList = append(b.functionList, f)
	return f
}

// mapping returns the mapping of the segment of info's module holding the
// PC (its executable segment, normally).
func (b *pprofBuilder) mapping(info pcInfo) *profile.Mapping {
	m := info.module
	seg := -1
	for i, s := range m.Segments {
		if a := info.pc - m.Bias; a >= s.Vaddr && a-s.Vaddr < s.Memsz {
			seg = i
			break
		}
	}
	k := mappingKey{m, seg}
	if pm := b.mappings[k]; pm != nil {
		return pm
	}
	pm := &profile.Mapping{
		ID:              uint64(len(b.mappingList) + 1),
		File:            info.path,
		BuildID:         hex.EncodeToString(m.BuildID),
		HasFunctions:    true,
		HasFilenames:    true,
		HasLineNumbers:  true,
		HasInlineFrames: true,
	}
	if seg >= 0 {
		s := m.Segments[seg]
		pm.Start, pm.Limit, pm.Offset = m.Bias+s.Vaddr, m.Bias+s.Vaddr+s.Memsz, s.Offset
	}
	b.mappings[k] = pm
	b.mappingList = append(b.mappingList, pm)
	return pm
}
