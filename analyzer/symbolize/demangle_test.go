package symbolize

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Expectations are c++filt's output (GNU style), except that clone
// suffixes are dropped and Rust names lose their hash / crate
// disambiguator, as addr2line -C prints them.
func TestDemangleName(t *testing.T) {
	for _, tc := range []struct{ mangled, want string }{
		{"_ZNK2ns3BoxIlE3getEi", "ns::Box<long>::get(int) const"},
		{"_ZN2ns5inner5twiceEi", "ns::inner::twice(int)"},
		{"_ZN2ns5inner3sumIiEET_S2_S2_", "int ns::inner::sum<int>(int, int)"},
		{"_ZZ4mainENKUliE_clEi", "main::{lambda(int)#1}::operator()(int) const"},
		{"_ZNKSt6vectorIiSaIiEE4sizeEv", "std::vector<int, std::allocator<int> >::size() const"},
		{"_ZN9__gnu_cxx13new_allocatorIcE8allocateEmPKv", "__gnu_cxx::new_allocator<char>::allocate(unsigned long, void const*)"},
		{"_Znwm", "operator new(unsigned long)"},
		{"_ZdlPvm", "operator delete(void*, unsigned long)"},
		{"_ZN2ns5inner5twiceEi.isra.0", "ns::inner::twice(int)"},
		{"_ZN2ns5inner5twiceEi.cold", "ns::inner::twice(int)"},
		{"_ZN5rtest4work17he7dda3d55e43ce13E", "rtest::work"},
		{"_RNvCs8wPFgSTMMKd_5rtest4work", "rtest::work"},
		{"_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE",
			"core::ptr::drop_in_place<std::rt::lang_start<()>::{{closure}}>"},
		{"malloc", "malloc"},
		{"main", "main"},
		{"_Zbogus", "_Zbogus"}, // not valid: unchanged
		{"_R", "_R"},           // too short
		{"__libc_malloc", "__libc_malloc"},
		{"", ""},
	} {
		assert.Equal(t, tc.want, demangleName(tc.mangled), tc.mangled)
	}
}
