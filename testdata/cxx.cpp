/*
 * cxx.cpp — C++ new/delete reach the hooks through libstdc++'s operator
 * new (malloc) and operator delete (free). Leaks: two Nodes (16 bytes
 * each, make_node) and an int[10] (40 bytes, leak_array); a 400-byte
 * vector buffer and one Node are freed. libstdc++ itself allocates its
 * exception emergency pool (73728 bytes in GCC 12) before main.
 */
#include <cstdlib>
#include <vector>

struct Node {
	int value;
	Node *next;
};

Node *volatile sink[3];

__attribute__((noinline)) Node *make_node(int v, Node *next)
{
	return new Node{v, next}; // LINE:make_node
}

__attribute__((noinline)) int *leak_array()
{
	return new int[10]; // LINE:leak_array
}

int main()
{
	Node *second = make_node(2, nullptr); // LINE:main_second
	Node *list = make_node(1, second);    // LINE:main_first
	sink[0] = list;
	Node *tmp = make_node(3, nullptr); // freed
	delete tmp;
	{
		std::vector<int> v;
		v.reserve(100);
		v.push_back(1);
	}
	sink[1] = reinterpret_cast<Node *>(leak_array()); // LINE:main_array
	return 0;
}
