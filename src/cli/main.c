#include "dptrain.h"
int main(void) { return 0; }
