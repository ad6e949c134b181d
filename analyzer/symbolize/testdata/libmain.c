int lib_entry(int n);

int main(int argc, char **argv)
{
	(void)argv;
	return lib_entry(argc) == 12345;
}
