package gate

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads a byte count as people write it: 4096, 24MB, 1.5MiB,
// 64K, 2GiB. Decimal units (kB, MB, GB) are powers of 1000, binary ones
// (K, KiB, M, MiB, ...) powers of 1024.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || v < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 4096, 24MB, 1.5MiB)", s)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"K": 1 << 10, "KI": 1 << 10, "KIB": 1 << 10, "KB": 1e3,
		"M": 1 << 20, "MI": 1 << 20, "MIB": 1 << 20, "MB": 1e6,
		"G": 1 << 30, "GI": 1 << 30, "GIB": 1 << 30, "GB": 1e9,
		"T": 1 << 40, "TI": 1 << 40, "TIB": 1 << 40, "TB": 1e12,
	}[strings.ToUpper(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (B, K/KiB, KB, M/MiB, MB, G/GiB, GB)", s, unit)
	}
	if v*mult >= 1<<63 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return uint64(v * mult), nil
}

// ParsePercent reads a growth limit: "10%" or "10" (percent), "0.5%".
func ParsePercent(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "%")
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid percentage %q (want e.g. 10%%)", s)
	}
	return v, nil
}
