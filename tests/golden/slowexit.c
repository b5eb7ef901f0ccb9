#include <stdlib.h>
#include <unistd.h>
static void w(void){ usleep(1500000); }
__attribute__((constructor)) static void init(void){ atexit(w); }
