// C++ names: namespaces, a class template, a function template, a lambda.
#include "where.h"

extern "C" __attribute__((noinline)) int probe(const char *label) { PROBE_BODY(label); }

namespace ns {
template <typename T> struct Box {
	T v;
	__attribute__((noinline)) T get(int k) const
	{
		return probe("box_get") + v + k; // @box_get
	}
};

namespace inner {
__attribute__((noinline)) int twice(int x)
{
	return probe("twice") * x; // @twice
}

template <typename T> __attribute__((noinline)) T sum(T a, T b)
{
	return probe("sum") + a + b; // @sum
}
} // namespace inner
} // namespace ns

int main(int argc, char **)
{
	ns::Box<long> b{3};
	auto f = [&](int k) __attribute__((noinline)) {
		return b.get(k) + probe("lambda"); // @lambda
	};
	long r = f(argc);
	r += ns::inner::twice(argc);
	r += ns::inner::sum<int>(argc, 2);
	return r == 12345;
}
