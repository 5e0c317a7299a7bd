// getxattr(2) and friends, which Swift's Glibc module does not export: the tests call them directly.
#include <sys/xattr.h>
