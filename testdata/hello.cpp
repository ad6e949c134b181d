// hello.cpp — a C++ hello world (std::cout, a std::vector): valgrind finds
// no block lost, LeakSanitizer no leak; libstdc++'s emergency pool and
// stdout's buffer stay allocated at exit, reachable from their globals.
#include <iostream>
#include <vector>

int main()
{
	std::vector<int> v{1, 2, 3};
	std::cout << "hello " << v.size() << std::endl;
	return 0;
}
