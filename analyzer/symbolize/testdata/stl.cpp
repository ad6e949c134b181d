// Heavier C++: STL containers and smart pointers inlined at -O2, member
// functions defined out of class (DW_AT_specification), virtual calls,
// exceptions. Only used by the whole-.text sweep against the oracles.
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace shapes {
struct Shape {
	virtual ~Shape() = default;
	virtual double area() const = 0;
};

struct Rect : Shape {
	double w, h;
	Rect(double w_, double h_) : w(w_), h(h_) {}
	double area() const override;
};

double Rect::area() const { return w * h; }

template <typename K> class Registry {
public:
	void add(const K &k, std::unique_ptr<Shape> s) { items_[k].push_back(std::move(s)); }
	double total() const;

private:
	std::map<K, std::vector<std::unique_ptr<Shape>>> items_;
};

template <typename K> double Registry<K>::total() const
{
	double t = 0;
	for (const auto &kv : items_)
		for (const auto &s : kv.second)
			t += s->area();
	return t;
}
} // namespace shapes

int main(int argc, char **argv)
{
	shapes::Registry<std::string> reg;
	for (int i = 0; i < argc + 3; i++)
		reg.add(std::string(argv[0]).substr(0, i % 4), std::make_unique<shapes::Rect>(i, i + 1));
	try {
		if (reg.total() < 0)
			throw std::runtime_error("negative");
	} catch (const std::exception &e) {
		return 2;
	}
	return reg.total() > 1e9;
}
