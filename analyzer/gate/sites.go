package gate

import "sort"

// Site is what one program leaked from one stack, over all its
// processes in a run and every kind that counts (direct, indirect,
// unknown), suppressed groups left out.
type Site struct {
	Program string
	Key     string // SiteKey of its frames
	Kinds   []string
	Bytes   uint64
	Objects uint64
	Frames  []Frame
	Pids    []uint32
}

// LeakSites adds up the leaked groups of reports per (program, site),
// largest first.
func LeakSites(reports []*Report) []*Site {
	byKey := map[[2]string]*Site{}
	var out []*Site
	for _, r := range reports {
		for i := range r.Leaks {
			g := &r.Leaks[i]
			if !g.Leaked() {
				continue
			}
			k := [2]string{r.Name(), SiteKey(g.Frames)}
			s := byKey[k]
			if s == nil {
				s = &Site{Program: k[0], Key: k[1], Frames: g.Frames}
				byKey[k] = s
				out = append(out, s)
			}
			s.Bytes += g.Bytes
			s.Objects += g.Objects
			if !contains(s.Kinds, g.Kind) {
				s.Kinds = append(s.Kinds, g.Kind)
			}
			if len(s.Pids) == 0 || s.Pids[len(s.Pids)-1] != r.Pid {
				s.Pids = append(s.Pids, r.Pid)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		if out[i].Program != out[j].Program {
			return out[i].Program < out[j].Program
		}
		return out[i].Key < out[j].Key
	})
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
